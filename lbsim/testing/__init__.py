"""lbsim in a user's test suite: the pytest plugin (:mod:`lbsim.testing.plugin`, loaded by
pytest through the ``pytest11`` entry point). Nothing here imports lbsim's data plane until
a fixture asks for a load balancer."""
