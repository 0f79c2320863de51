"""Ray wiring: the only package that imports ray.

Local runs must keep every Ray socket on 127.0.0.1. Ray picks this machine's non-loopback
interface by default; with RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 set before Ray starts (and the node
IP given as 127.0.0.1) a local Ray, and a multi-node `ray.cluster_utils.Cluster`, bind to loopback.
"""

import os

os.environ.setdefault('RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER', '0')
