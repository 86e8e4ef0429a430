'use strict';
'require view';
'require form';
'require rpc';
'require uci';
'require ui';
'require dom';

function T(s) {
	return document.createTextNode((s === null || s === undefined) ? '' : String(s));
}

var callPresets = rpc.declare({ object: 'luci.lanveil', method: 'presets', expect: { '': {} } });
// reject: a call that ends in a ubus status (the method's "not found", an rpcd error) rejects, as
// an ACL refusal does, instead of resolving to the expected empty list (zoneList: unknown zones).
var callZones = rpc.declare({ object: 'luci.lanveil', method: 'zones', expect: { zones: [] }, reject: true });
var callCheck = rpc.declare({ object: 'luci.lanveil', method: 'check', expect: { '': {} } });
var callProbe = rpc.declare({
	object: 'luci.lanveil', method: 'probe', params: [ 'url', 'ca_file', 'pins' ], expect: { '': {} }
});

// Only the scheme is checked here, as the daemon reads it (UpstreamUrl::from_str in
// firmware/config/src/upstream.rs): tls://, quic:// or https://, no spaces. The rest
// (addresses, ports, names, paths) is the daemon's own checker's at Save & Apply, which
// shows its message in the form; a stricter copy here could only reject valid URLs.
var URL_RE = /^(tls|quic|https):\/\/\S+$/;

// A list of firewall zones: the router's zones from the plugin's zones method (names and
// their networks only; the ACL does not grant read of the firewall config), and any zone
// the config names that is not one of them, shown as such and kept on save. Unset means
// dflt (the init script's default): shown as dflt, and not written unless it is changed.
// zones null: the zones method failed (rpcd, the login's ACL, no firewall config), so the
// router's zones are unknown: the zones the config names are listed as they are (the page
// says why, see render) and kept on save.
function zoneList(s, name, title, description, zones, dflt) {
	var o = s.option(form.MultiValue, name, title, description);
	(zones || []).forEach(function(z) {
		var nets = Array.isArray(z.networks) ? z.networks : [];
		o.value(z.name, nets.length ? _('%s: %s').format(z.name, nets.join(', ')) : z.name);
	});
	o.default = dflt;
	// No empty list (unset means dflt: an emptied list would silently become it).
	o.rmempty = false;
	// The list in another order (the dropdown's, the firewall's zone order) is no change: no
	// write, no apply, no reload of lanveil.
	o.write = function(section_id, value) {
		var cur = L.toArray(this.cfgvalue(section_id)).slice().sort().join(' ');
		if (cur === L.toArray(value).slice().sort().join(' '))
			return;
		return form.MultiValue.prototype.write.apply(this, arguments);
	};
	o.cfgvalue = function(section_id) {
		var v = uci.get('lanveil', section_id, name);
		return (v == null || v === '' || (Array.isArray(v) && !v.length)) ? [ dflt ] : L.toArray(v);
	};
	o.renderWidget = function(section_id, option_index, cfgvalue) {
		L.toArray((cfgvalue != null) ? cfgvalue : this.default).forEach(function(z) {
			if ((this.keylist || []).indexOf(z) < 0)
				this.value(z, zones ? _('%s (not a firewall zone)').format(z) : z);
		}, this);
		return form.MultiValue.prototype.renderWidget.apply(this, arguments);
	};
	return o;
}

return view.extend({
	load: function() {
		return Promise.all([
			L.resolveDefault(callPresets(), { presets: [] }),
			L.resolveDefault(callZones(), null)
		]);
	},

	render: function(data) {
		var presets = data[0], zones = Array.isArray(data[1]) ? data[1] : null;
		var m, s, o;

		m = new form.Map('lanveil', _('lanveil settings'),
			_('Changes are checked with the daemon\'s own validator before they are applied.'));

		s = m.section(form.TypedSection, 'upstream', _('Upstream resolvers'),
			_('Choose a preset or enter a URL: tls://IP[:PORT]#NAME, quic://IP[:PORT]#NAME, https://IP[:PORT][/PATH]#NAME or https://NAME[:PORT][/PATH] (with bootstrap addresses).'));
		s.addremove = true;
		s.anonymous = false;

		// A preset fills the URL field (not stored itself): the same list
		// `lanveil-ctl presets` shows, from /usr/share/lanveil/presets.json.
		o = s.option(form.ListValue, '_preset', _('Preset'));
		o.value('', _('-- custom URL --'));
		(presets.presets || []).forEach(function(p) {
			(p.dot_urls || []).forEach(function(u) {
				o.value(u, _('%s – %s (%s)').format(p.operator, p.variant, u));
			});
		});
		o.cfgvalue = function() { return ''; };
		o.write = o.remove = function() {};
		o.onchange = function(ev, section_id, value) {
			if (!value)
				return;
			var url = this.map.lookupOption('url', section_id);
			if (url && url[0])
				url[0].getUIElement(section_id).setValue(value);
		};

		o = s.option(form.Value, 'url', _('URL'));
		o.rmempty = false;
		o.validate = function(section_id, value) {
			if (!value)
				return _('An upstream needs a URL');
			return URL_RE.test(value) ? true : _('Not a URL lanveil accepts: tls://IP[:PORT]#NAME, quic://IP[:PORT]#NAME, https://IP[:PORT][/PATH]#NAME or https://NAME[:PORT][/PATH]');
		};

		o = s.option(form.DynamicList, 'pin', _('SPKI pins'), _('sha256/BASE64 of the server\'s public key; any one must match.'));
		o.optional = true;

		// Probe from the router with the values in the form (not yet saved).
		o = s.option(form.Button, '_probe', _('Probe from the router'));
		o.inputtitle = _('Probe');
		o.inputstyle = 'action';
		o.onclick = L.bind(this.handleProbe, this);
		o.write = o.remove = function() {};
		o = s.option(form.Value, 'ca_file', _('CA file'), _('Trust anchors for this upstream instead of the system bundle.'));
		o.optional = true;
		o = s.option(form.DynamicList, 'bootstrap', _('Bootstrap addresses'), _('For https://NAME/… upstreams.'));
		o.optional = true;
		o = s.option(form.Flag, 'sni', _('Send SNI'), _('Send the authentication name as SNI (it is verified either way).'));
		o.default = '1';
		o.rmempty = false;
		o = s.option(form.Flag, 'tls_resumption', _('TLS session resumption'), _('Resumption links connections to each other.'));
		o.default = '0';

		s = m.section(form.NamedSection, 'main', 'lanveil', _('Resolver'));
		o = s.option(form.ListValue, 'upstream_policy', _('Upstream policy'));
		o.value('failover', _('first healthy upstream in file order'));
		o.value('round_robin', _('each in turn'));
		o.value('fastest', _('lowest smoothed RTT'));
		o.default = 'failover';
		o = s.option(form.Flag, 'cache', _('Cache answers'));
		o.default = '1';
		o = s.option(form.Flag, 'serve_stale', _('Serve stale answers'), _('RFC 8767: expired answers when no upstream answers.'));
		o.default = '1';
		o = s.option(form.Value, 'query_log', _('Query log entries'), _('Opt-in in-memory query log of N entries (never written anywhere); 0 = off.'));
		o.datatype = 'uinteger';
		o.placeholder = '0';

		s = m.section(form.NamedSection, 'main', 'lanveil', _('LAN signals'));
		o = s.option(form.Value, 'captive_portal_uri', _('Captive-portal API URI'), _('RFC 8910, announced to LAN clients.'));
		o.optional = true;
		o = s.option(form.Value, 'v6only_wait', _('IPv6-only wait (s)'), _('RFC 8925; 0 = off, else at least 300. Needs the DNS64 prefix.'));
		o.datatype = 'uinteger';
		o.optional = true;
		o = s.option(form.Value, 'dns64_prefix', _('DNS64 prefix'));
		o.optional = true;
		o.placeholder = '64:ff9b::/96';

		s = m.section(form.NamedSection, 'openwrt', 'openwrt', _('LAN capture'));
		o = s.option(form.Flag, 'force_dns', _('Force DNS through the router'), _('Redirect LAN DNS aimed at other resolvers to the router.'));
		o.default = '1';
		o = zoneList(s, 'force_dns_zone', _('Zones captured'), _('Default: lan.'), zones, 'lan');
		o = s.option(form.Flag, 'block_dot', _('Block DNS-over-TLS/QUIC to other resolvers'));
		o.default = '0';

		// The init script's leak guard (table inet lanveil_leak): on unless option leak_guard '0';
		// its zones default to wan when the list is empty. Kept while the guard is off.
		o = s.option(form.Flag, 'leak_guard', _('Leak guard'),
			_('While lanveil runs, nothing dnsmasq sends may leave through these zones: a server= line outside /etc/config/dhcp (e.g. in /etc/dnsmasq.conf) cannot send the LAN\'s queries to the ISP in plaintext.'));
		o.default = '1';
		o = zoneList(s, 'leak_guard_zone', _('Zones guarded'), _('Default: wan.'), zones, 'wan');
		o.retain = true;
		o.depends('leak_guard', '1');

		this.map = m;
		return m.render().then(function(node) {
			if (!zones)
				node.insertBefore(E('div', { 'class': 'alert-message warning', 'id': 'lanveil-zones-unread' }, [
					T(_('The router\'s firewall zones could not be read: the zone lists show only the zones these settings name, and keep them when saved.'))
				]), node.firstChild.nextSibling);
			return node;
		});
	},

	uiValue: function(section_id, name) {
		var opt = this.map.lookupOption(name, section_id);
		return (opt && opt[0]) ? opt[0].formvalue(section_id) : null;
	},

	handleProbe: function(ev, section_id) {
		var self = this;
		var url = this.uiValue(section_id, 'url');
		var ca = this.uiValue(section_id, 'ca_file') || '';
		var pins = this.uiValue(section_id, 'pin') || [];
		var box = document.getElementById('lanveil-probe-' + section_id);
		if (!box) {
			box = E('div', { 'class': 'cbi-value', 'id': 'lanveil-probe-' + section_id });
			ev.target.parentNode.appendChild(box);
		}
		dom.content(box, [ T(_('Probing %s …').format(url || '')) ]);
		return callProbe(url || '', ca, Array.isArray(pins) ? pins : [ pins ]).then(function(r) {
			var nodes = [
				E('div', { 'class': 'lanveil-probe-state' }, [ T(r.ok
					? _('Authenticated: TLS handshake in %d ms.').format(r.handshake_ms)
					: _('Failed: %s').format(r.error || _('no answer'))) ])
			];
			if (r.spki) {
				nodes.push(E('div', {}, [ T(_('Server key (SPKI):') + ' '), E('code', { 'class': 'lanveil-probe-spki' }, [ T(r.spki) ]), ' ',
					E('button', {
						'class': 'btn cbi-button-add lanveil-probe-pin',
						'click': function(ev2) {
							ev2.preventDefault();
							self.addPin(section_id, r.spki);
						}
					}, [ T(_('Pin this key')) ])
				]));
			}
			if (r.not_after)
				nodes.push(E('div', {}, [ T(_('Certificate valid until %s').format(new Date(r.not_after * 1000).toISOString())) ]));
			dom.content(box, nodes);
		}, function(err) {
			dom.content(box, [ T(_('Failed: %s').format(err.message)) ]);
		});
	},

	addPin: function(section_id, spki) {
		var opt = this.map.lookupOption('pin', section_id);
		if (!opt || !opt[0])
			return;
		var w = opt[0].getUIElement(section_id);
		var cur = w.getValue() || [];
		if (!Array.isArray(cur))
			cur = [ cur ];
		if (cur.indexOf(spki) < 0)
			cur.push(spki);
		w.setValue(cur);
	},

	showCheckError: function(message) {
		var box = document.getElementById('lanveil-check-error');
		if (!box) {
			box = E('div', { 'class': 'alert-message error', 'id': 'lanveil-check-error' });
			var map = document.querySelector('.cbi-map');
			map.insertBefore(box, map.firstChild.nextSibling);
		}
		dom.content(box, [
			E('strong', {}, [ T(_('Not applied: the daemon refused this configuration.')) ]),
			E('br'),
			E('code', { 'id': 'lanveil-check-message' }, [ T(message) ])
		]);
		box.scrollIntoView();
	},

	// Save & Apply: stage the form, let the daemon check the result, apply only if
	// it accepts it. A refused configuration stays staged (the running one is
	// untouched) and the form shows the daemon's message.
	handleSaveApply: function(ev, mode) {
		var self = this;
		var old = document.getElementById('lanveil-check-error');
		if (old)
			old.remove();
		return this.handleSave(ev).then(function() {
			return callCheck();
		}).then(function(res) {
			if (!res.ok) {
				self.showCheckError(res.message || _('unknown error'));
				return;
			}
			ui.changes.apply(mode == '0');
		});
	}
});
