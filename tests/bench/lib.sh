# Shared by the bench scripts (sourced). start_dot_upstream DIR PORT ZONE [LOCAL-DATA]: a per-run CA and a
# leaf for "dot.test" in DIR (ca.pem is what lanveil trusts), and Debian's unbound serving DoT on
# 127.0.0.1:PORT from a static local ZONE, started in the background.
# shellcheck shell=bash
start_dot_upstream() {
	local dir=$1 port=$2 zone=$3 data=${4:-} data_line=""
	[ -n "$data" ] && data_line="  local-data: \"$data\""
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$dir/ca.key" -out "$dir/ca.pem" \
		-days 2 -subj "/CN=bench CA" 2>/dev/null
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$dir/leaf.key" -out "$dir/leaf.csr" \
		-subj "/CN=dot.test" 2>/dev/null
	printf 'subjectAltName=DNS:dot.test\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$dir/ext.cnf"
	openssl x509 -req -in "$dir/leaf.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial -out "$dir/leaf.pem" \
		-days 2 -extfile "$dir/ext.cnf" 2>/dev/null
	cat >"$dir/unbound.conf" <<CONF
server:
  interface: 127.0.0.1@$port
  tls-port: $port
  tls-service-key: "$dir/leaf.key"
  tls-service-pem: "$dir/leaf.pem"
  do-daemonize: no
  chroot: ""
  username: ""
  pidfile: ""
  use-syslog: no
  directory: "$dir"
  module-config: "iterator"
  local-zone: "$zone" static
$data_line
  access-control: 127.0.0.0/8 allow
remote-control:
  control-enable: no
CONF
	/usr/sbin/unbound -d -c "$dir/unbound.conf" >/dev/null 2>&1 &
}
