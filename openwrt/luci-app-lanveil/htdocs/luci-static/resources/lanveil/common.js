'use strict';
'require baseclass';
'require rpc';

// What lanveil's views share ('require lanveil.common as common').

// reject: a call that ends in a ubus status (a method rpcd does not have, an exception or exit()
// in the plugin, a time-out) rejects, as an ACL refusal does, instead of resolving to {}, which
// would read as "lanveil runs, but its control socket does not answer".
var callStatus = rpc.declare({ object: 'luci.lanveil', method: 'status', expect: { '': {} }, reject: true });

return baseclass.extend({
	// Every value that comes from the daemon or the network is put into the page as a text
	// node, never as markup: LuCI's E()/dom.append treat a plain string child as HTML.
	T: function(s) {
		return document.createTextNode((s === null || s === undefined) ? '' : String(s));
	},

	// A failed call's error in one line: LuCI's rpc error says which call and the ubus status
	// ("RPC call to luci.lanveil/status failed with ubus code 9: …"); the stack LuCI appends to
	// it on the next lines is left out.
	callError: function(err) {
		return String((err && err.message) ? err.message : err).split('\n')[0];
	},

	// The status method's answer, or { rpc_error } when the call failed (an ACL without it too).
	status: function() {
		var self = this;
		return callStatus().catch(function(err) { return { rpc_error: self.callError(err) }; });
	}
});
