"""Named numbers of the data-plane role (SPEC section 18: changes visible within 1 s)."""

# A file's size, mtime and inode are compared this often: a stat call, nothing read.
FILE_CHECK_SECONDS = 0.2
# The control plane holds a version request this long when nothing changes, and checks
# its registry's version this often meanwhile.
LONG_POLL_SECONDS = 10.0
LONG_POLL_CHECK_SECONDS = 0.2
# A data plane asking for the config or waiting on a version: connect and read timeouts.
CONTROL_PLANE_CONNECT_TIMEOUT = 2.0
CONTROL_PLANE_READ_TIMEOUT = LONG_POLL_SECONDS + 5.0
# Back-off between attempts while the control plane is unreachable.
RECONNECT_MIN_SECONDS = 0.2
RECONNECT_MAX_SECONDS = 2.0
# The control plane lists a data plane as alive while it waited on a version this recently.
ALIVE_WITHIN_SECONDS = 3 * LONG_POLL_SECONDS

CLUSTER_CONFIG_PATH = "/api/manage/cluster/config"
CLUSTER_VERSION_PATH = "/api/manage/cluster/config/version"
