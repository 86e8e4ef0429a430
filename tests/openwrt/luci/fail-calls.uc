// SPDX-License-Identifier: MIT OR Apache-2.0
// test_luci.sh only, never shipped: put in place of the plugin's last line (its `return`) in a
// copy of root/usr/share/rpcd/ucode/lanveil.uc on the emulated router (browser_test.py,
// rpc_failure_checks). A method named in /tmp/lanveil-luci-fail (lines "METHOD STATUS") ends
// with that ubus status without running (rpcd makes a method's exit(N) the call's status: 3 is
// what rpcd answers for a method the plugin does not have, 9 what it answers for an exception
// in the plugin); every other call runs as shipped. The file is read at each call, so the
// failures change without reloading rpcd.
function lanveil_test_failing(name) {
	for (let l in split(readfile('/tmp/lanveil-luci-fail') ?? '', '\n')) {
		const w = split(trim(l), ' ');
		if (w[0] == name && +w[1] > 0)
			return +w[1];
	}
	return 0;
}

function lanveil_test_wrap(name, m) {
	const real = m.call;
	m.call = function(req) {
		const st = lanveil_test_failing(name);
		if (st)
			exit(st);
		return real(req);
	};
}

for (let name, m in methods)
	lanveil_test_wrap(name, m);

return { 'luci.lanveil': methods };
