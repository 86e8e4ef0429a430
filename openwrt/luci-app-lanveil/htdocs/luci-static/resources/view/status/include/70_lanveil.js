'use strict';
'require baseclass';
'require lanveil.common as common';

// The front page's card: is LAN DNS private right now?
var T = common.T;

return baseclass.extend({
	title: _('Private DNS (lanveil)'),

	// The status, or { rpc_error } when the call failed.
	load: function() {
		return common.status();
	},

	// Private only when the daemon answers, an upstream is up and dnsmasq forwards
	// only to lanveil (the status method's dnsmasq flag, as on the status page).
	render: function(res) {
		var text, state, up = 0, total = 0;
		if (!res || res.rpc_error) {
			text = _('No answer from the router\'s lanveil plugin: %s').format(res ? res.rpc_error : _('no status'));
			state = 'unknown';
		}
		else if (res.guard_armed) {
			text = _('DNS is down for the LAN (fail-closed): lanveil is not running.');
			state = 'down';
		}
		else if (res.running === false) {
			text = _('lanveil is not running: LAN DNS is not protected.');
			state = 'stopped';
		}
		else if (!res.answered) {
			text = _('lanveil runs, but its control socket does not answer.');
			state = 'silent';
		}
		else if (!res.dnsmasq) {
			state = 'not-private';
			if (res.dnsmasq_issue === 'other')
				text = _('Not private: dnsmasq also forwards elsewhere (%s), in plaintext.')
					.format((res.dnsmasq_other || []).join(' '));
			else if (res.dnsmasq_issue === 'off')
				text = _('Not private: dnsmasq does not forward to lanveil (option dnsmasq \'0\').');
			else if (res.dnsmasq_issue === 'resolv')
				text = _('Not private: dnsmasq also uses the WAN\'s DNS servers (noresolv is off).');
			else
				text = _('Not private: dnsmasq does not forward to lanveil.');
		}
		else {
			(res.status.upstreams || []).forEach(function(u) { total++; if (u.up) up++; });
			state = up > 0 ? 'private' : 'no-upstream';
			text = up > 0
				? _('Private: %d of %d upstreams up.').format(up, total)
				: _('No upstream is up: lookups fail closed.');
		}
		var rows = [ E('tr', { 'class': 'tr' }, [
			E('td', { 'class': 'td left', 'width': '33%' }, [ T(_('State')) ]),
			E('td', { 'class': 'td left', 'id': 'lanveil-overview-state', 'data-state': state }, [ T(text) ])
		]) ];
		// Not serving: what the init script says (its status file), as text.
		if (res && res.init && res.init.text && [ 'down', 'stopped', 'silent' ].indexOf(state) >= 0)
			rows.push(E('tr', { 'class': 'tr' }, [
				E('td', { 'class': 'td left' }, [ T(_('Service')) ]),
				E('td', { 'class': 'td left', 'id': 'lanveil-overview-init', 'style': 'white-space:pre-line' }, [ T(res.init.text) ])
			]));
		if (res && res.answered)
			(res.status.upstreams || []).forEach(function(u) {
				rows.push(E('tr', { 'class': 'tr' }, [
					E('td', { 'class': 'td left' }, [ T(u.name) ]),
					E('td', { 'class': 'td left' }, [ T((u.up ? _('up') : _('down')) +
						(u.srtt_ms != null ? ', ' + _('%d ms').format(u.srtt_ms) : '')) ])
				]));
			});
		return E('table', { 'class': 'table', 'id': 'lanveil-overview' }, rows);
	}
});
