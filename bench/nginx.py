"""nginx as the benchmark's fast upstream and as the reverse-proxy peer (when installed)."""

from __future__ import annotations

import shutil
from pathlib import Path

__all__ = ["nginx_available", "nginx_command", "write_nginx_config"]

BODY = '{"ok":true,"service":"bench","items":[1,2,3]}'


def nginx_available() -> bool:
    return shutil.which("nginx") is not None or Path("/usr/sbin/nginx").exists()


def _binary() -> str:
    return shutil.which("nginx") or "/usr/sbin/nginx"


def write_nginx_config(directory: Path, upstream_port: int, proxy_port: int) -> Path:
    """One nginx (one worker) serving a small JSON body, and a keep-alive reverse proxy in front."""
    directory.mkdir(parents=True, exist_ok=True)
    for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (directory / sub).mkdir(exist_ok=True)
    config = directory / "nginx.conf"
    config.write_text(f"""
worker_processes 1;
pid {directory}/nginx.pid;
error_log {directory}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {directory}/client_body;
  proxy_temp_path {directory}/proxy;
  fastcgi_temp_path {directory}/fastcgi;
  uwsgi_temp_path {directory}/uwsgi;
  scgi_temp_path {directory}/scgi;
  keepalive_requests 1000000;
  upstream bench_upstream {{ server 127.0.0.1:{upstream_port}; keepalive 128; }}
  server {{
    listen 127.0.0.1:{upstream_port};
    location / {{ default_type application/json; return 200 '{BODY}'; }}
  }}
  server {{
    listen 127.0.0.1:{proxy_port};
    location / {{
      proxy_pass http://bench_upstream;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    }}
  }}
}}
""")
    return config


def nginx_command(config: Path) -> list[str]:
    return [_binary(), "-c", str(config), "-g", "daemon off;"]
