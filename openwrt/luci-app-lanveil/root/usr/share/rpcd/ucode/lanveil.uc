// SPDX-License-Identifier: MIT OR Apache-2.0
// luci-app-lanveil's rpcd plugin: ubus object `luci.lanveil`.
//
// No shell command line is ever built from a request: the daemon's CLI runs with
// popen(ARRAY) (execvp, no shell). Where its stderr is wanted, argv goes through
// the constant script `exec "$0" "$@" 2>&1`, so every argument stays one argv entry.

'use strict';

import { popen, readfile, writefile, mkdir, unlink, rmdir, stat, lstat, lsdir } from 'fs';
import { cursor } from 'uci';
import * as ubus from 'ubus';

const DAEMON = '/usr/sbin/lanveil';
const CONF = '/etc/config/lanveil';
const PRESETS = '/usr/share/lanveil/presets.json';
const SOCKET = '/var/run/lanveil/daemon/control.sock';
// check's scratch files: in root's /var/run (not world-writable /tmp, where another
// user could plant links), in a directory made fresh with a random name per call.
const WORK = '/var/run/lanveil-luci';
const INIT = '/etc/init.d/lanveil';
const SERVICE_ACTIONS = [ 'start', 'stop', 'restart' ];
const MAX_OUT = 65536;

// run(argv, merge_stderr): { code, out }. Output is capped.
function run(argv, merge) {
	const cmd = merge ? [ '/bin/sh', '-c', 'exec "$0" "$@" 2>&1', ...argv ] : argv;
	const p = popen(cmd, 'r');
	if (!p)
		return { code: 127, out: '' };
	let out = p.read(MAX_OUT) ?? '';
	// drain the rest so the child is not blocked on a full pipe
	while (p.read(MAX_OUT)) ;
	const st = p.close();
	return { code: st, out: out };
}

function trim_lines(s) {
	return join('\n', filter(split(s ?? '', '\n'), l => length(trim(l)) > 0));
}

function control_socket() {
	const c = cursor();
	return c.get('lanveil', 'main', 'control_socket') ?? SOCKET;
}

// The service's procd instances: the daemon (instance 'lanveil') and the root guard
// (instance 'guard'). Only the daemon's counts as running: the guard outlives a daemon
// procd gave up respawning (and then keeps the LAN fail-closed). null: no ubus.
function service_instances() {
	const conn = ubus.connect();
	if (!conn)
		return null;
	const s = conn.call('service', 'list', { name: 'lanveil' });
	conn.disconnect();
	const inst = s?.lanveil?.instances ?? {};
	return { daemon: inst?.lanveil?.running == true, guard: inst?.guard?.running == true };
}

// The init script's fail-closed guard: table 'inet lanveil_down' loaded = dnsmasq still
// forwards only to lanveil, whose daemon is gone, and the LAN's DNS is REFUSED.
function guard_armed() {
	return run([ 'nft', 'list', 'table', 'inet', 'lanveil_down' ], false).code == 0;
}

// The init script's status file (/etc/init.d/lanveil status; lanveil.sh, LANVEIL_STATUS):
// "STATE since TIME", then text lines. Returned as plain text (the page shows it as text).
const STATUS_FILE = '/var/run/lanveil/status';
const MAX_STATUS = 4096;

function init_status() {
	const text = readfile(STATUS_FILE, MAX_STATUS);
	if (text == null)
		return { state: null, since: null, text: 'lanveil has not been started.' };
	const lines = split(text, '\n');
	const m = match(lines[0] ?? '', /^([a-z-]+) since (.*)$/);
	return {
		state: m ? m[1] : null,
		since: m ? m[2] : null,
		text: trim_lines(join('\n', m ? slice(lines, 1) : lines))
	};
}

// The daemon's listener when 'listen' is unset (firmware/config/src/keys.rs).
const DEFAULT_LISTEN = '127.0.0.1:5353';

// dnsmasq 'server' targets for lanveil's listeners, as the init script derives them
// (lanveil_dnsmasq_targets): 127.0.0.1:5453 -> 127.0.0.1#5453, 0.0.0.0 -> 127.0.0.1,
// [::] -> ::1, [2001:db8::1]:5453 -> 2001:db8::1#5453; port 53 (dnsmasq's) is skipped.
function dnsmasq_targets(c) {
	let listen = null;
	c.foreach('lanveil', 'lanveil', s => {
		listen = s.listen;
		return false;
	});
	listen ??= [ DEFAULT_LISTEN ];
	if (type(listen) != 'array')
		listen = [ listen ];
	let targets = [];
	for (let l in listen) {
		const m = match(l, /^\[(.*)\]:([0-9]+)$/) ?? match(l, /^(.*):([0-9]+)$/);
		if (!m || m[2] == '53')
			continue;
		let addr = m[1];
		if (addr == '0.0.0.0')
			addr = '127.0.0.1';
		else if (addr == '::')
			addr = '::1';
		push(targets, `${addr}#${m[2]}`);
	}
	return targets;
}

// Unconditional server= lines (no /DOMAIN/) in the dnsmasq files an instance also
// reads: /etc/dnsmasq.SECTION.conf, else /etc/dnsmasq.conf, and its confdir
// (OpenWrt's dnsmasq init script).
function dnsmasq_file_servers(s) {
	let files = [];
	const own = `/etc/dnsmasq.${s['.name']}.conf`;
	push(files, stat(own) ? own : '/etc/dnsmasq.conf');
	for (let d in split(split(s.confdir ?? '/tmp/dnsmasq.d', ',')[0], ' '))
		if (length(d))
			for (let f in lsdir(d) ?? [])
				push(files, `${d}/${f}`);
	let out = [];
	for (let f in files) {
		if (stat(f)?.type != 'file')
			continue;
		for (let l in split(readfile(f, MAX_OUT) ?? '', '\n')) {
			const m = match(l, /^[ \t]*server[ \t]*=[ \t]*([^ \t#][^ \t]*)/);
			if (m && index(m[1], '/') < 0)
				push(out, m[1]);
		}
	}
	return out;
}

// dnsmasq wired through lanveil: every dnsmasq section has noresolv, a server=
// pointing at one of lanveil's listeners and no other unconditional server (one
// without /DOMAIN/, which dnsmasq would race against lanveil, in plaintext), in its
// uci section or in the dnsmasq files it reads.
// { wired, issue: null | 'off' (option dnsmasq '0') | 'other' | 'resolv' | 'unwired', other: [...] }
function dnsmasq_state() {
	const c = cursor();
	const targets = dnsmasq_targets(c);
	let any = false, ours_all = true, resolv = false, other = [];
	c.foreach('dhcp', 'dnsmasq', s => {
		any = true;
		let servers = s.server ?? [];
		if (type(servers) != 'array')
			servers = [ servers ];
		const files = dnsmasq_file_servers(s);
		const ours = filter([ ...servers, ...files ], v => index(targets, v) >= 0);
		for (let v in [ ...servers, ...files ])
			if (index(targets, v) < 0 && index(v, '/') < 0 && index(other, v) < 0)
				push(other, v);
		if (s.noresolv != '1')
			resolv = true;
		if (!length(ours))
			ours_all = false;
	});
	const wired = length(targets) > 0 && any && ours_all && !resolv && !length(other);
	let issue = null;
	if (!wired) {
		if (c.get('lanveil', 'openwrt', 'dnsmasq') == '0')
			issue = 'off';
		else if (!length(targets) || !any || !ours_all)
			issue = 'unwired';
		else if (length(other))
			issue = 'other';
		else
			issue = 'resolv';
	}
	return { wired: wired, issue: issue, other: slice(other, 0, 8) };
}

function capture_active() {
	return run([ 'nft', 'list', 'table', 'inet', 'lanveil' ], false).code == 0;
}

// The init script's leak guard (lanveil.sh, "The leak guard"): table 'inet lanveil_leak',
// loaded while dnsmasq forwards to lanveil unless option leak_guard is off; its rules'
// counters are the packets it dropped. Options read as lanveil_opt/lanveil_bool do (the
// first openwrt section; zones default to wan, one word each).
// { enabled, zones: [...], loaded, drops: N | null (not loaded) }
function leak_guard() {
	const c = cursor();
	let opt = null, zones = null;
	c.foreach('lanveil', 'openwrt', s => {
		opt = s.leak_guard;
		zones = s.leak_guard_zone;
		return false;
	});
	if (type(zones) != 'array')
		zones = zones == null ? [] : [ zones ];
	let words = [];
	for (let z in zones)
		for (let w in split(trim(z), /[ \t]+/))
			if (length(w))
				push(words, w);
	const enabled = opt == null || opt == '' || index([ '1', 'yes', 'on', 'true', 'enabled' ], opt) >= 0;
	const r = run([ 'nft', 'list', 'table', 'inet', 'lanveil_leak' ], false);
	let drops = null;
	if (r.code == 0) {
		drops = 0;
		for (let l in split(r.out, '\n')) {
			const m = match(l, / counter packets ([0-9]+) /);
			if (m)
				drops += +m[1];
		}
	}
	return { enabled: enabled, zones: length(words) ? slice(words, 0, 16) : [ 'wan' ], loaded: r.code == 0, drops: drops };
}

// The firewall zones fw4 loads, by name (and their networks' names, for the labels), read
// here as root: the settings page's zone lists, without granting a LuCI login read of the
// whole firewall config (forwards, rules, ipsets). fw4's own rules for a zone section
// (firewall4's fw4.uc, parse_zone and parse_options): option 'name' is required, one value
// (a list: "must not be a list") and an identifier (FW4_IDENTIFIER); option 'enabled' is one
// of fw4's booleans, on when unset. A section that breaks one is not loaded ("skipped due to
// invalid options"), nor one whose enabled is off ("is disabled, ignoring section"). A name
// seen before is listed once, with the first loaded zone's networks.
// Not checked here: fw4 also skips a zone for an invalid value of another option (a policy,
// a subnet, a helper); the firewall's own page and `fw4 check` say so.
// { zones: [ { name, networks: [...] } ], unloaded: [ { name, reason } ] }: unloaded, the
// names of sections fw4 does not load that no loaded zone has (reason 'disabled', or
// 'invalid': a name or an enabled fw4 refuses), so the page can say why a zone its settings
// name is not in the firewall. No firewall config (no firewall package, a file uci cannot
// read): the call fails with UBUS_STATUS_NOT_FOUND (rpcd makes a method's exit() the call's
// status), not an empty list, so the page does not take the zones its settings name for
// zones the router lacks.
const UBUS_STATUS_NOT_FOUND = 4;
const FW4_IDENTIFIER = /^[a-zA-Z_.][a-zA-Z0-9\/_.-]*$/;
const MAX_UNLOADED = 32;

// fw4's parse_bool (unset: the default, on); null: not a boolean fw4 reads.
function fw4_enabled(v) {
	if (v == null)
		return true;
	if (type(v) != 'string')
		return null;
	if (index([ '1', 'on', 'true', 'yes' ], v) >= 0)
		return true;
	if (index([ '0', 'off', 'false', 'no' ], v) >= 0)
		return false;
	return null;
}

function zones() {
	const c = cursor();
	let out = [], seen = {}, skipped = [], why = {};
	const read = c.foreach('firewall', 'zone', s => {
		const name = s.name, enabled = fw4_enabled(s.enabled);
		let reason = null;
		if (type(name) != 'string' || !match(name, FW4_IDENTIFIER) || enabled == null)
			reason = 'invalid';
		else if (!enabled)
			reason = 'disabled';
		if (reason) {
			for (let n in (type(name) == 'array' ? name : [ name ]))
				if (type(n) == 'string' && length(n) && !why[n]) {
					why[n] = reason;
					push(skipped, n);
				}
			return;
		}
		if (seen[name])
			return;
		seen[name] = true;
		let nets = s.network ?? [];
		if (type(nets) != 'array')
			nets = [ nets ];
		let words = [];
		for (let n in nets)
			for (let w in split(trim(n), /[ \t]+/))
				if (length(w) && index(words, w) < 0)
					push(words, w);
		push(out, { name: name, networks: words });
	});
	if (read == null)
		exit(UBUS_STATUS_NOT_FOUND);
	const unloaded = map(filter(skipped, n => !seen[n]), n => ({ name: n, reason: why[n] }));
	return { zones: out, unloaded: slice(unloaded, 0, MAX_UNLOADED) };
}

function signals() {
	const r = run([ DAEMON, '--check-config', CONF, '--print-signals' ], true);
	let list = [];
	if (r.code == 0)
		for (let l in split(r.out, '\n')) {
			l = trim(l);
			if (!length(l))
				continue;
			const sp = index(l, ' ');
			push(list, sp < 0 ? { key: l, value: '' } : { key: substr(l, 0, sp), value: substr(l, sp + 1) });
		}
	return { ok: r.code == 0, signals: list, error: r.code == 0 ? null : trim_lines(r.out) };
}

function valid_sid(s) {
	return type(s) == 'string' && match(s, /^[0-9a-f]{32}$/) != null;
}

// A directory only root can reach: WORK (root's, mode 0700, no link), and below it one
// made fresh (mkdir fails on anything that exists) with a random name, holding conf/
// and save/. null if any of that does not hold.
function private_dir(path) {
	const st = lstat(path);
	return st?.type == 'directory' && st.uid == 0 && (st.mode & 0o077) == 0;
}

function work_dir() {
	mkdir(WORK, 0o700);
	if (!private_dir(WORK))
		return null;
	const rnd = readfile('/dev/urandom', 12);
	if (length(rnd) != 12)
		return null;
	const dir = `${WORK}/check-${hexenc(rnd)}`;
	if (!mkdir(dir, 0o700) || !private_dir(dir))
		return null;
	if (!mkdir(`${dir}/conf`, 0o700) || !mkdir(`${dir}/save`, 0o700)) {
		remove_work_dir(dir);
		return null;
	}
	return dir;
}

function remove_work_dir(dir) {
	for (let sub in [ 'save', 'conf' ]) {
		for (let f in lsdir(`${dir}/${sub}`) ?? [])
			unlink(`${dir}/${sub}/${f}`);
		rmdir(`${dir}/${sub}`);
	}
	rmdir(dir);
}

const methods = {
	status: {
		call: function() {
			const inst = service_instances();
			const dm = dnsmasq_state();
			const res = {
				// the daemon's procd instance (not the guard's); null: no ubus
				running: inst ? inst.daemon : null,
				// the guard's instance runs / its table is loaded (LAN DNS refused)
				guard_running: inst ? inst.guard : null,
				guard_armed: guard_armed(),
				answered: false,
				status: null,
				error: null,
				dnsmasq: dm.wired,
				dnsmasq_issue: dm.issue,
				dnsmasq_other: dm.other,
				capture: capture_active(),
				leak_guard: leak_guard(),
				init: init_status()
			};
			if (!stat(control_socket())) {
				res.error = 'no control socket';
				return res;
			}
			const r = run([ DAEMON, '--control', control_socket(), 'status-json' ], true);
			if (r.code != 0) {
				res.error = trim_lines(r.out);
				return res;
			}
			let parsed = null;
			try { parsed = json(r.out); } catch (e) { parsed = null; }
			if (type(parsed) != 'object') {
				res.error = 'unreadable answer';
				return res;
			}
			res.answered = true;
			res.status = parsed;
			return res;
		}
	},

	presets: {
		call: function() {
			const text = readfile(PRESETS);
			if (!text)
				return { presets: [], error: `${PRESETS} missing` };
			let f = null;
			try { f = json(text); } catch (e) { return { presets: [], error: `${PRESETS}: not JSON` }; }
			let out = [];
			for (let p in f?.presets ?? []) {
				const urls = map(p.ipv4 ?? [], ip => `tls://${ip}:853#${p.auth_name}`);
				push(out, {
					id: p.id, operator: p.operator, jurisdiction: p.jurisdiction,
					variant: p.variant, filtering: p.filtering, dnssec: p.dnssec, ecs: p.ecs,
					auth_name: p.auth_name, dot_urls: urls, privacy_policy: p.privacy_policy
				});
			}
			return { presets: out, compiled: f?.compiled, verified_live: f?.verified_live };
		}
	},

	// check: the configuration as this session would commit it (its staged uci
	// changes over /etc/config/lanveil), validated by the daemon's own checker.
	check: {
		args: { ubus_rpc_session: '' },
		call: function(req) {
			const sid = req.args?.ubus_rpc_session;
			const savedir = valid_sid(sid) ? `/var/run/rpcd/uci-${sid}` : '/tmp/.uci';
			const dir = work_dir();
			if (!dir)
				return { ok: false, message: `cannot make a private directory under ${WORK}` };
			writefile(`${dir}/conf/lanveil`, readfile(CONF) ?? '');
			const delta = readfile(`${savedir}/lanveil`);
			if (delta)
				writefile(`${dir}/save/lanveil`, delta);
			const c = cursor(`${dir}/conf`, `${dir}/save`);
			c.load('lanveil');
			c.commit('lanveil');
			const r = run([ DAEMON, '--check-config', `${dir}/conf/lanveil` ], true);
			remove_work_dir(dir);
			// The checker names the file: show it as the router's config file.
			let msg = replace(trim_lines(r.out), `${dir}/conf/lanveil`, CONF);
			msg = replace(msg, /^lanveil: /, '');
			return { ok: r.code == 0, message: msg };
		}
	},

	// service: start, stop or restart lanveil's own init script (and only it: the ACL
	// grants this method, not luci's setInitAction for every script). The result is the
	// script's exit status, its own output (capped) and the status it left behind
	// (its status file and the guard's state), for the page to show as text.
	service: {
		args: { action: '' },
		call: function(req) {
			const action = req.args?.action;
			if (type(action) != 'string' || index(SERVICE_ACTIONS, action) < 0)
				return { result: false, error: 'action must be start, stop or restart' };
			// Its output goes to a private file, not a pipe: whatever it starts in the
			// background cannot hold this call open.
			const dir = work_dir();
			const out = dir ? `${dir}/save/output` : '/dev/null';
			const r = run([ '/bin/sh', '-c', 'exec "$0" "$1" >"$2" 2>&1 </dev/null', INIT, action, out ], false);
			let said = '';
			if (dir) {
				said = readfile(out, MAX_STATUS) ?? '';
				remove_work_dir(dir);
			}
			return {
				result: r.code == 0,
				output: trim_lines(said),
				init: init_status(),
				guard_armed: guard_armed()
			};
		}
	},

	// probe: one authenticated TLS handshake from the router through the daemon's
	// own verifier (`lanveil --probe URL [--ca-file F] [--pin P]...`): ok, the
	// failure in words, the handshake time, the leaf's SPKI pin and expiry.
	probe: {
		args: { url: '', ca_file: '', pins: [] },
		call: function(req) {
			const a = req.args ?? {};
			if (type(a.url) != 'string' || !length(a.url) || length(a.url) > 1024)
				return { ok: false, error: 'no URL to probe' };
			const argv = [ DAEMON, '--probe', a.url ];
			if (type(a.ca_file) == 'string' && length(a.ca_file))
				push(argv, '--ca-file', a.ca_file);
			for (let p in (type(a.pins) == 'array' ? a.pins : []))
				if (type(p) == 'string' && length(p))
					push(argv, '--pin', p);
			const r = run(argv, false);
			let res = null;
			try { res = json(trim(r.out)); } catch (e) { res = null; }
			if (type(res) != 'object')
				return { ok: false, error: `no answer from ${DAEMON} --probe (exit ${r.code})` };
			return res;
		}
	},

	signals: {
		call: function() {
			return signals();
		}
	},

	zones: {
		call: function() {
			return zones();
		}
	}
};

return { 'luci.lanveil': methods };
