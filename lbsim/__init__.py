"""lbsim: a local emulator of an Azure-style cloud load balancer."""

__version__ = "0.1.0"
