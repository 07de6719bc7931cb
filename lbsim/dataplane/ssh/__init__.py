"""Built-in instances that speak real SSH (asyncssh, in an event loop of its own).

:class:`SshHost` runs the servers of one runtime; :mod:`.shell` is what a login can run,
:mod:`.server` who may log in and where forwarded channels go, :mod:`.keys` the host keys.
"""

from __future__ import annotations

from lbsim.dataplane.ssh.host import SshHost
from lbsim.dataplane.ssh.instance import SshInstance

__all__ = ["SshHost", "SshInstance"]
