# Sourced by the benchmark scripts: nginx serving a small static JSON file on loopback, the
# floor for any HTTP answer on this machine. Sets $work (a temporary directory), $nginx_pid
# and $nginx_url; `peer_port` picks the port. The caller's EXIT trap stops it.
if ! command -v nginx >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx >/dev/null
fi
work="$(mktemp -d)"
chmod 755 "$work"
port="${peer_port:-18099}"
echo '{"items":[],"next":null}' > "$work/static.json"
cat > "$work/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $work/nginx.pid;
error_log $work/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  server {
    listen 127.0.0.1:$port;
    location / { root $work; default_type application/json; }
  }
}
CONF
nginx -c "$work/nginx.conf" & nginx_pid=$!
nginx_url="http://127.0.0.1:$port/static.json"
