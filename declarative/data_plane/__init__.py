"""A gateway without a database (GATEWAY_ROLE=data_plane, SPEC section 18).

`sources` reads its config (a file, or a control plane that pushes changes), `watcher`
compiles it into the snapshot the data plane serves, keeping the last good one when a new
config is invalid or the source is away, and `persisted` keeps the control plane's last
config on disk so a restart works while the control plane is down.
"""
