package observe

import (
	"net/netip"
	"regexp"
	"testing"
)

// TestAddressRegexp: the expression matches exactly the addresses of the prefix, anchored as
// relabelling anchors it.
func TestAddressRegexp(t *testing.T) {
	for _, tc := range []struct {
		prefix   string
		in, out  []string
		wantExpr string
	}{
		{prefix: "10.64.64.0/18", in: []string{"10.64.64.1", "10.64.127.255", "10.64.100.7"}, out: []string{"10.64.63.255", "10.64.128.0", "10.65.64.1", "110.64.64.1", "10.64.64.10x"},
			wantExpr: `10\.64\.(64|65|66|67|68|69|70|71|72|73|74|75|76|77|78|79|80|81|82|83|84|85|86|87|88|89|90|91|92|93|94|95|96|97|98|99|100|101|102|103|104|105|106|107|108|109|110|111|112|113|114|115|116|117|118|119|120|121|122|123|124|125|126|127)\.\d+`},
		{prefix: "10.244.0.0/16", in: []string{"10.244.0.1", "10.244.255.3"}, out: []string{"10.245.0.1"}, wantExpr: `10\.244\.\d+\.\d+`},
		{prefix: "192.168.7.0/24", in: []string{"192.168.7.9"}, out: []string{"192.168.8.9", "192.168.70.9"}, wantExpr: `192\.168\.7\.\d+`},
	} {
		expr := addressRegexp(netip.MustParsePrefix(tc.prefix))
		if expr != tc.wantExpr {
			t.Errorf("%s: %s, want %s", tc.prefix, expr, tc.wantExpr)
		}
		re := regexp.MustCompile("^(?:" + expr + ")$")
		for _, a := range tc.in {
			if !re.MatchString(a) {
				t.Errorf("%s: %s does not match %s", tc.prefix, expr, a)
			}
		}
		for _, a := range tc.out {
			if re.MatchString(a) {
				t.Errorf("%s: %s matches %s", tc.prefix, expr, a)
			}
		}
	}
}
