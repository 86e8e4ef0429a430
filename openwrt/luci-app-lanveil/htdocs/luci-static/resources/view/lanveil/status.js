'use strict';
'require view';
'require poll';
'require rpc';
'require ui';
'require dom';
'require lanveil.common as common';

var T = common.T;

// reject: a call that ends in a ubus status (a method rpcd does not have, an exception or exit()
// in the plugin, a time-out) rejects, as an ACL refusal does, instead of resolving to {}: empty
// signals would read as none in force. The page says which call failed and why (unread, below;
// the status: common.status).
var callSignals = rpc.declare({ object: 'luci.lanveil', method: 'signals', expect: { '': {} }, reject: true });
// Start/stop/restart of lanveil's init script only (not luci's setInitAction, which
// the ACL would have to grant for every init script): { result, output, init, guard_armed }.
var callService = rpc.declare({
	object: 'luci.lanveil', method: 'service', params: [ 'action' ], expect: { '': {} }, reject: true
});

// The signals, or the signals method's own failure shape ({ ok: false, error }) when the call
// failed.
function fetchSignals() {
	return callSignals().catch(function(err) { return { ok: false, error: common.callError(err) }; });
}

// RFC 8914 Extended DNS Error codes lanveil answers with.
var EDE = {
	0: _('Other error'), 6: _('DNSSEC bogus'), 9: _('DNSKEY missing'), 13: _('Cached error'),
	14: _('Not ready'), 15: _('Blocked'), 18: _('Prohibited'), 20: _('Not authoritative'),
	21: _('Not supported'), 22: _('No reachable authority'), 23: _('Network error'), 24: _('Invalid data')
};

function fmtDate(unix) {
	return new Date(unix * 1000).toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC');
}

function row(label, value, id) {
	return E('tr', { 'class': 'tr' }, [
		E('td', { 'class': 'td left', 'width': '33%' }, [ T(label) ]),
		E('td', { 'class': 'td left', 'id': id || null }, [ value ])
	]);
}

function yesno(b) {
	return T(b ? _('yes') : _('no'));
}

return view.extend({
	handleAction: function(action, ev) {
		var out = document.getElementById('lanveil-action-result');
		var said = document.getElementById('lanveil-action-output');
		dom.content(out, [ T(_('Running %s …').format(action)) ]);
		dom.content(said, []);
		return callService(action).then(function(r) {
			var ok = r && r.result === true;
			dom.content(out, [ T(ok ? _('%s: done').format(action) : _('%s: failed').format(action)) ]);
			// What the init script printed and the status it left, as text.
			var lines = [];
			if (r && r.output)
				lines.push(r.output);
			if (r && r.init && r.init.text)
				lines.push(r.init.text);
			if (r && r.guard_armed)
				lines.push(_('Fail-closed guard: on (LAN DNS is refused until lanveil runs again).'));
			if (r && r.error)
				lines.push(r.error);
			dom.content(said, [ T(lines.join('\n')) ]);
			return common.status().then(L.bind(this.update, this));
		}.bind(this), function(err) {
			// The call itself failed (rpcd, the plugin): the init script may not have run.
			dom.content(out, [ T(_('%s: failed (%s)').format(action, common.callError(err))) ]);
		});
	},

	load: function() {
		return Promise.all([ common.status(), fetchSignals() ]);
	},

	renderUpstreams: function(st) {
		var rows = [
			E('tr', { 'class': 'tr table-titles' }, [
				E('th', { 'class': 'th' }, [ T(_('Upstream')) ]),
				E('th', { 'class': 'th' }, [ T(_('URL')) ]),
				E('th', { 'class': 'th' }, [ T(_('State')) ]),
				E('th', { 'class': 'th' }, [ T(_('RTT')) ]),
				E('th', { 'class': 'th' }, [ T(_('Certificate valid until')) ]),
				E('th', { 'class': 'th' }, [ T(_('Last failure')) ])
			])
		];
		(st.upstreams || []).forEach(function(u) {
			var state = u.up ? _('up') : (u.backing_off ? _('backing off') : _('not connected'));
			var cert = '';
			if (u.cert_not_after != null) {
				var days = Math.floor((u.cert_not_after - st.wall_unix) / 86400);
				cert = _('%s (%d days)').format(fmtDate(u.cert_not_after), days);
			}
			rows.push(E('tr', { 'class': 'tr lanveil-upstream', 'data-up': u.up ? '1' : '0' }, [
				E('td', { 'class': 'td lanveil-name' }, [ T(u.name) ]),
				E('td', { 'class': 'td lanveil-url' }, [ T(u.url) ]),
				E('td', { 'class': 'td lanveil-state' }, [ T(state) ]),
				E('td', { 'class': 'td lanveil-rtt' }, [ T(u.srtt_ms != null ? _('%d ms').format(u.srtt_ms) : '-') ]),
				E('td', { 'class': 'td lanveil-cert' }, [ T(cert) ]),
				E('td', { 'class': 'td lanveil-error' }, [ T(u.last_error || '') ])
			]));
		});
		return E('table', { 'class': 'table', 'id': 'lanveil-upstreams' }, rows);
	},

	// yes, or no and why (the status method's dnsmasq_issue).
	dnsmasqText: function(res) {
		if (res.dnsmasq)
			return T(_('yes'));
		switch (res.dnsmasq_issue) {
		case 'other':
			return T(_('no: it also forwards to %s (plaintext)').format((res.dnsmasq_other || []).join(' ')));
		case 'off':
			return T(_('no: option dnsmasq \'0\''));
		case 'resolv':
			return T(_('no: it also uses the WAN\'s DNS servers (noresolv off)'));
		default:
			return T(_('no'));
		}
	},

	// The init script's leak guard (the status method's leak_guard): [ data-state, text ].
	leakGuardText: function(lg) {
		if (!lg)
			return [ '', '' ];
		var zones = (lg.zones || []).join(' ');
		if (lg.loaded && lg.drops > 0)
			return [ 'dropped', _('on: dropped %d packets dnsmasq sent to zone(s) %s in plaintext: a server= line outside /etc/config/dhcp (/etc/dnsmasq.conf, /tmp/dnsmasq.d) names a resolver there').format(lg.drops, zones) ];
		if (lg.loaded)
			return [ 'on', _('on: nothing dnsmasq sends leaves by zone(s) %s').format(zones) ];
		if (!lg.enabled)
			return [ 'off', _('off (turned off in the settings)') ];
		return [ 'not-loaded', _('off: not loaded (dnsmasq does not forward to lanveil, or zone(s) %s have no device; see the system log)').format(zones) ];
	},

	renderData: function(res, sig) {
		var st = res.status, nodes = [];
		nodes.push(E('h3', {}, [ T(_('Upstreams')) ]), this.renderUpstreams(st));

		nodes.push(E('h3', {}, [ T(_('Router')) ]));
		var clock = st.clock_synchronized
			? _('synchronized (%s)').format(fmtDate(st.wall_unix))
			: _('not synchronized: working from the time floor %s').format(fmtDate(st.floor_unix));
		nodes.push(E('table', { 'class': 'table' }, [
			row(_('Version'), T(st.version), 'lanveil-version'),
			row(_('Clock'), T(clock), 'lanveil-clock'),
			row(_('dnsmasq forwards through lanveil'), this.dnsmasqText(res), 'lanveil-dnsmasq'),
			row(_('LAN DNS capture active'), yesno(res.capture), 'lanveil-capture'),
			row(_('Queries in flight'), T(st.inflight)),
			row(_('Cache'), T(_('%d entries, %d KiB').format(st.cache_entries, Math.ceil(st.cache_bytes / 1024))))
		]));

		var c = st.captive || {};
		if (c.phase && c.phase !== 'open' && c.phase !== 'free') {
			var msg = [ T(_('Captive portal on the WAN: %s.').format(c.phase)) ];
			if (c.api_uri)
				msg.push(E('br'), T(_('Announced by the WAN:')), ' ', E('code', {}, [ T(c.api_uri) ]));
			if (c.user_portal_url)
				msg.push(E('br'), T(_('Log in at:')), ' ', E('code', {}, [ T(c.user_portal_url) ]));
			if (c.seconds_remaining != null)
				msg.push(E('br'), T(_('Session time left: %d s').format(c.seconds_remaining)));
			if (c.api_error)
				msg.push(E('br'), T(_('Portal API: %s').format(c.api_error)));
			nodes.push(E('div', { 'class': 'alert-message warning', 'id': 'lanveil-captive' }, msg));
		}
		if (c.plaintext_left_s != null) {
			nodes.push(E('div', { 'class': 'alert-message warning', 'id': 'lanveil-plaintext' }, [
				T(_('Plaintext DNS exception open for %s via %s for %d more seconds (%d queries so far).')
					.format((c.plaintext_names || []).join(' '), (c.wan_dns || []).join(' '),
						c.plaintext_left_s, c.plaintext_queries))
			]));
		}

		nodes.push(E('h3', {}, [ T(_('Counters')) ]));
		nodes.push(E('table', { 'class': 'table', 'id': 'lanveil-counters' },
			(st.counters || []).map(function(kv) { return row(kv[0], T(kv[1])); })));
		nodes.push(E('h3', {}, [ T(_('Failures by Extended DNS Error')) ]));
		var fails = st.failures_by_ede || [];
		nodes.push(fails.length
			? E('table', { 'class': 'table', 'id': 'lanveil-failures' }, fails.map(function(kv) {
				return row(_('EDE %d (%s)').format(kv[0], EDE[kv[0]] || _('unknown')), T(kv[1]));
			}))
			: E('p', { 'id': 'lanveil-failures' }, [ T(_('none')) ]));

		nodes.push(E('h3', {}, [ T(_('LAN signals')) ]));
		var list = (sig && sig.signals) || [];
		if (sig && sig.ok === false)
			nodes.push(E('p', { 'id': 'lanveil-signals', 'data-state': 'unread' }, [ T(_('Cannot read the signals: %s').format(sig.error || '')) ]));
		else if (!list.length)
			nodes.push(E('p', { 'id': 'lanveil-signals' }, [ T(_('none in force')) ]));
		else
			nodes.push(E('table', { 'class': 'table', 'id': 'lanveil-signals' },
				list.map(function(s) { return row(s.key, T(s.value)); })));
		return nodes;
	},

	// Never shows stale data as live: without an answer the data section is emptied.
	update: function(res, sig) {
		var state = document.getElementById('lanveil-service-state');
		var data = document.getElementById('lanveil-data');
		if (!state || !data)
			return;
		if (sig !== undefined)
			this.lastSignals = sig;
		var text, st;
		if (res.rpc_error) {
			// Nothing is known: no state, no init status, no leak guard, no data.
			text = _('The status could not be read from the router: %s').format(res.rpc_error);
			st = 'unread';
		}
		else if (res.guard_armed) {
			text = _('DNS is down for the LAN (fail-closed): lanveil is not running.');
			st = 'down';
		}
		else if (res.running === false) {
			text = _('The lanveil service is not running.');
			st = 'stopped';
		}
		else if (!res.answered) {
			text = _('The lanveil service runs, but its control socket does not answer (%s).').format(res.error || _('no answer'));
			st = 'silent';
		}
		else {
			text = _('running, answering on its control socket');
			st = 'running';
		}
		dom.content(state, [ T(text) ]);
		state.setAttribute('data-state', st);
		// The init script's own words (its status file), e.g. "running on its last good
		// configuration: ... invalid", and the guard's state: text only.
		var init = document.getElementById('lanveil-init-status');
		if (init && res.rpc_error) {
			dom.content(init, []);
			init.setAttribute('data-state', '');
		}
		else if (init && res.init) {
			var lines = [ res.init.text || '' ];
			if (res.guard_armed)
				lines.push(_('Fail-closed guard: on (LAN DNS is refused until lanveil runs again).'));
			dom.content(init, [ T(lines.join('\n')) ]);
			init.setAttribute('data-state', res.init.state || '');
		}
		// Shown whether the daemon answers or not: the guard stays while it is down (not
		// when the status could not be read: leakGuardText(null) is empty).
		var leak = document.getElementById('lanveil-leak-guard');
		if (leak) {
			var lg = this.leakGuardText(res.rpc_error ? null : res.leak_guard);
			dom.content(leak, [ T(lg[1]) ]);
			leak.setAttribute('data-state', lg[0]);
		}
		dom.content(data, res.answered ? this.renderData(res, this.lastSignals) : []);
	},

	render: function(loaded) {
		var self = this;
		var btn = function(action, label, cls) {
			return E('button', {
				'class': 'btn ' + cls, 'id': 'lanveil-' + action,
				'click': ui.createHandlerFn(self, 'handleAction', action)
			}, [ T(label) ]);
		};
		var node = E('div', { 'class': 'cbi-map' }, [
			E('h2', {}, [ T(_('lanveil: private DNS for the LAN')) ]),
			E('div', { 'class': 'cbi-section' }, [
				E('p', {}, [ E('strong', {}, [ T(_('Service:') + ' ') ]), E('span', { 'id': 'lanveil-service-state' }) ]),
				E('p', {}, [ E('strong', {}, [ T(_('Init script:') + ' ') ]),
					E('span', { 'id': 'lanveil-init-status', 'style': 'white-space:pre-line' }) ]),
				E('p', {}, [ E('strong', {}, [ T(_('Leak guard:') + ' ') ]), E('span', { 'id': 'lanveil-leak-guard' }) ]),
				E('div', {}, [
					btn('start', _('Start'), 'cbi-button-apply'), ' ',
					btn('stop', _('Stop'), 'cbi-button-reset'), ' ',
					btn('restart', _('Restart'), 'cbi-button-reload'), ' ',
					E('span', { 'id': 'lanveil-action-result' }),
					E('div', { 'id': 'lanveil-action-output', 'style': 'white-space:pre-line' })
				])
			]),
			E('div', { 'class': 'cbi-section', 'id': 'lanveil-data' })
		]);
		this.lastSignals = loaded[1];
		requestAnimationFrame(function() { self.update(loaded[0], loaded[1]); });
		poll.add(function() {
			return Promise.all([ common.status(), fetchSignals() ]).then(function(r) {
				self.update(r[0], r[1]);
			});
		}, 5);
		return node;
	},

	handleSaveApply: null,
	handleSave: null,
	handleReset: null
});
