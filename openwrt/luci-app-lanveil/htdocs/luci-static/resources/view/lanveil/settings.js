'use strict';
'require view';
'require form';
'require rpc';
'require uci';
'require ui';
'require dom';
'require lanveil.common as common';

var T = common.T;

// reject: every call that ends in a ubus status (a method rpcd does not have, an exception or
// exit() in the plugin, a time-out) rejects, as an ACL refusal does, instead of resolving to the
// expected default: an empty answer would read as no presets, unknown zones, a configuration
// the daemon refused for no reason, or a probe without an answer. Each caller says what failed.
var callPresets = rpc.declare({ object: 'luci.lanveil', method: 'presets', expect: { '': {} }, reject: true });
var callZones = rpc.declare({ object: 'luci.lanveil', method: 'zones', expect: { '': {} }, reject: true });
var callCheck = rpc.declare({ object: 'luci.lanveil', method: 'check', expect: { '': {} }, reject: true });
var callProbe = rpc.declare({
	object: 'luci.lanveil', method: 'probe', params: [ 'url', 'ca_file', 'pins' ], expect: { '': {} }, reject: true
});

// Only the scheme is checked here, as the daemon reads it (UpstreamUrl::from_str in
// firmware/config/src/upstream.rs): tls://, quic:// or https://, no spaces. The rest
// (addresses, ports, names, paths) is the daemon's own checker's at Save & Apply, which
// shows its message in the form; a stricter copy here could only reject valid URLs.
var URL_RE = /^(tls|quic|https):\/\/\S+$/;

// Why a zone the config names is not one the firewall loads (fw: the zones method's answer,
// see zoneList): its label in the list and in the page's warning.
function zoneProblem(fw, z) {
	switch (fw.unloaded[z]) {
	case 'disabled':
		return _('%s (disabled in the firewall)').format(z);
	case 'invalid':
		return _('%s (the firewall does not load it: invalid zone section)').format(z);
	default:
		return _('%s (not a firewall zone)').format(z);
	}
}

// A list of firewall zones: the zones fw4 loads, from the plugin's zones method (names and
// their networks only; the ACL does not grant read of the firewall config), and any zone
// the config names that is not one of them, labelled with why (disabled in the firewall,
// a section fw4 refuses, no such zone) and kept on save. Unset means dflt (the init
// script's default): shown as dflt, and not written unless it is changed.
// fw: { zones: [ { name, networks } ] or null, unloaded: { name: reason } }. zones null: the
// zones method failed (rpcd, the login's ACL, no firewall config), so the router's zones are
// unknown: the zones the config names are listed as they are (the page says why, see
// render) and kept on save.
function zoneList(s, name, title, description, fw, dflt) {
	var o = s.option(form.MultiValue, name, title, description);
	var zones = fw.zones;
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
				this.value(z, zones ? zoneProblem(fw, z) : z);
		}, this);
		return form.MultiValue.prototype.renderWidget.apply(this, arguments);
	};
	// The zones the config names that the firewall does not load, with why (none while the
	// zones are unknown).
	o.problems = function(section_id) {
		return zones ? L.toArray(this.cfgvalue(section_id)).filter(function(z) {
			return !zones.some(function(zz) { return zz.name === z; });
		}).map(function(z) { return zoneProblem(fw, z); }) : [];
	};
	return o;
}

// A call's failure as [ null, message ]: the view says what could not be read and why.
function failed(err) {
	return [ null, common.callError(err) ];
}

function warning(id, text) {
	return E('div', { 'class': 'alert-message warning', 'id': id }, [ T(text) ]);
}

return view.extend({
	load: function() {
		return Promise.all([
			callPresets().then(function(r) { return [ r, null ]; }, failed),
			callZones().then(function(r) {
				return Array.isArray(r.zones) ? [ r, null ] : [ null, _('no zone list in the answer') ];
			}, failed)
		]);
	},

	render: function(data) {
		var presets = data[0][0] || { presets: [] }, fwAnswer = data[1][0];
		var fw = { zones: fwAnswer ? fwAnswer.zones : null, unloaded: Object.create(null) };
		(fwAnswer && Array.isArray(fwAnswer.unloaded) ? fwAnswer.unloaded : []).forEach(function(u) {
			fw.unloaded[u.name] = u.reason;
		});
		var warnings = [];
		if (data[0][1])
			warnings.push(warning('lanveil-presets-unread', _('The presets could not be read (%s): enter the URL yourself.').format(data[0][1])));
		else if (presets.error)
			warnings.push(warning('lanveil-presets-unread', _('The presets could not be read (%s): enter the URL yourself.').format(presets.error)));
		if (!fw.zones)
			warnings.push(warning('lanveil-zones-unread', _('The router\'s firewall zones could not be read (%s): the zone lists show only the zones these settings name, and keep them when saved.').format(data[1][1])));
		var m, s, o, zoneLists = [];

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
		o = zoneList(s, 'force_dns_zone', _('Zones captured'), _('Default: lan.'), fw, 'lan');
		zoneLists.push(o);
		o = s.option(form.Flag, 'block_dot', _('Block DNS-over-TLS/QUIC to other resolvers'));
		o.default = '0';

		// The init script's leak guard (table inet lanveil_leak): on unless option leak_guard '0';
		// its zones default to wan when the list is empty. Kept while the guard is off.
		o = s.option(form.Flag, 'leak_guard', _('Leak guard'),
			_('While lanveil runs, nothing dnsmasq sends may leave through these zones: a server= line outside /etc/config/dhcp (e.g. in /etc/dnsmasq.conf) cannot send the LAN\'s queries to the ISP in plaintext.'));
		o.default = '1';
		o = zoneList(s, 'leak_guard_zone', _('Zones guarded'), _('Default: wan.'), fw, 'wan');
		zoneLists.push(o);
		o.retain = true;
		o.depends('leak_guard', '1');

		this.map = m;
		return m.render().then(function(node) {
			// Zones the settings name that the firewall does not load: named here, not only in
			// the lists' labels (after the map's render: it loads the config).
			var problems = zoneLists.map(function(zl) {
				var p = zl.problems('openwrt');
				return p.length ? _('%s: %s').format(zl.title, p.join(', ')) : null;
			}).filter(function(p) { return p; });
			if (problems.length)
				warnings.push(warning('lanveil-zones-unloaded', _('These settings name zones the firewall does not load: %s. Enable or fix them under Network → Firewall, or pick other zones.').format(problems.join('; '))));
			warnings.reverse().forEach(function(w) {
				node.insertBefore(w, node.firstChild.nextSibling);
			});
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
			// The call itself failed (rpcd, the plugin): not a probe that failed.
			dom.content(box, [ E('div', { 'class': 'lanveil-probe-state', 'data-state': 'unread' }, [
				T(_('The probe could not run: %s').format(common.callError(err))) ]) ]);
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

	// state: 'refused' (the daemon's checker said no) or 'unchecked' (the check call failed).
	showCheckError: function(state, title, message) {
		var box = document.getElementById('lanveil-check-error');
		if (!box) {
			box = E('div', { 'class': 'alert-message error', 'id': 'lanveil-check-error' });
			var map = document.querySelector('.cbi-map');
			map.insertBefore(box, map.firstChild.nextSibling);
		}
		box.setAttribute('data-state', state);
		dom.content(box, [
			E('strong', {}, [ T(title) ]),
			E('br'),
			E('code', { 'id': 'lanveil-check-message' }, [ T(message) ])
		]);
		box.scrollIntoView();
	},

	// Save & Apply: stage the form, let the daemon check the result, apply only if
	// it accepts it. A refused configuration stays staged (the running one is
	// untouched) and the form shows the daemon's message; so does one that could not
	// be checked (the check call failed), with the call's error.
	handleSaveApply: function(ev, mode) {
		var self = this;
		var old = document.getElementById('lanveil-check-error');
		if (old)
			old.remove();
		return this.handleSave(ev).then(function() {
			return callCheck().then(function(res) {
				if (res.ok !== true) {
					self.showCheckError('refused', _('Not applied: the daemon refused this configuration.'),
						res.message || _('(the checker gave no reason)'));
					return;
				}
				ui.changes.apply(mode == '0');
			}, function(err) {
				self.showCheckError('unchecked', _('Not applied: the configuration could not be checked; the changes stay saved, unapplied.'),
					common.callError(err));
			});
		});
	}
});
