'use strict';
'require baseclass';
'require rpc';

// The front page's card: is LAN DNS private right now?
function T(s) {
	return document.createTextNode((s === null || s === undefined) ? '' : String(s));
}

var callStatus = rpc.declare({ object: 'luci.lanveil', method: 'status', expect: { '': {} } });

return baseclass.extend({
	title: _('Private DNS (lanveil)'),

	load: function() {
		return L.resolveDefault(callStatus(), null);
	},

	render: function(res) {
		var text, up = 0, total = 0;
		if (!res)
			text = _('No answer from the router\'s lanveil plugin.');
		else if (res.running === false)
			text = _('lanveil is not running: LAN DNS is not protected.');
		else if (!res.answered)
			text = _('lanveil runs, but its control socket does not answer.');
		else {
			(res.status.upstreams || []).forEach(function(u) { total++; if (u.up) up++; });
			text = up > 0
				? _('Private: %d of %d upstreams up.').format(up, total)
				: _('No upstream is up: lookups fail closed.');
		}
		var rows = [ E('tr', { 'class': 'tr' }, [
			E('td', { 'class': 'td left', 'width': '33%' }, [ T(_('State')) ]),
			E('td', { 'class': 'td left', 'id': 'lanveil-overview-state' }, [ T(text) ])
		]) ];
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
