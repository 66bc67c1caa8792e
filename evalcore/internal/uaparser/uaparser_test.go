package uaparser

import (
	"bufio"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"unicode/utf8"
)

// agreedPath holds the reference's answers for the differential corpus (see difftest_test.go):
// one JSON array per line, [user agent, os_name, os_version, browser_name, browser_version].
const agreedPath = "testdata/agreed.jsonl"

type agreedCase struct {
	ua   string
	want Result
}

// readAgreed loads testdata/agreed.jsonl; nil if it does not exist yet.
func readAgreed(t testing.TB) []agreedCase {
	f, err := os.Open(agreedPath)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []agreedCase
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for line := 1; sc.Scan(); line++ {
		var rec [5]string
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("%s:%d: %v", agreedPath, line, err)
		}
		out = append(out, agreedCase{rec[0], Result{rec[1], rec[2], rec[3], rec[4]}})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestAgreed replays the reference's answers recorded by the differential test, so the
// regression check runs everywhere without Node.
func TestAgreed(t *testing.T) {
	cases := readAgreed(t)
	if len(cases) == 0 {
		t.Fatalf("%s is missing or empty", agreedPath)
	}
	bad := 0
	for _, c := range cases {
		if got := Parse(c.ua); got != c.want {
			bad++
			if bad <= 30 {
				t.Errorf("Parse(%q)\n got  %+v\n want %+v", c.ua, got, c.want)
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d recorded user agents disagree with the reference", bad, len(cases))
	}
}

// TestRules pins the tokenizer's rules one by one (the expected values are the reference's,
// checked with the differential test).
func TestRules(t *testing.T) {
	tests := []struct {
		name, ua string
		want     Result
	}{
		{"empty", "", Result{"Other", "0.0.0", "Other", "0.0.0"}},
		{"windows 10 chrome", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/134.0.0.0 Safari/537.36",
			Result{"Windows", "10", "Chrome", "134.0.0.0"}},
		{"windows xp from NT 5.1 and four-part chrome", "Mozilla/5.0 (Windows NT 5.1; WOW64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/109.0.5414.87 Safari/537.36",
			Result{"Windows", "XP", "Chrome", "109.0.5414.87"}},
		{"windows 7", "Mozilla/5.0 (Windows NT 6.1; Win64; x64; rv:109.0) Gecko/20100101 Firefox/115.0",
			Result{"Windows", "7", "Firefox", "115.0"}},
		{"unmapped NT version", "Mozilla/5.0 (compatible; MSIE 10.0; Windows NT 6.2; Trident/6.0)",
			Result{"Windows", "0.0.0", "IE", "10.0"}},
		{"windows xp literal is not mapped", "Windows XP", Result{"Windows", "0.0.0", "Other", "0.0.0"}},
		{"doubled space breaks the NT look-ahead", "Windows  NT 10.0", Result{"Windows", "0.0.0", "Other", "0.0.0"}},
		{"semicolons separate tokens", "Windows;NT;10.0", Result{"Windows", "10", "Other", "0.0.0"}},
		{"tab does not separate", "x\tChrome/1.2", Result{"Other", "0.0.0", "Other", "0.0.0"}},
		{"quotes are trimmed", "\"Chrome/1.2\"", Result{"Other", "0.0.0", "Chrome", "1.2"}},
		{"brackets are not", "[Chrome/1.2]", Result{"Other", "0.0.0", "Other", "0.0.0"}},
		{"mac underscores", "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.10 Safari/605.1.1",
			Result{"Mac OS X", "10.15.7", "Safari", "17.10"}},
		{"mac os without x", "Mac OS 10_15", Result{"Mac OS X", "10.15", "Other", "0.0.0"}},
		{"iphone", "Mozilla/5.0 (iPhone; CPU iPhone OS 16_7_10 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.",
			Result{"iOS", "16.7.10", "Mobile Safari", "16.6"}},
		{"ipad webview", "Mozilla/5.0 (iPad15,3; CPU OS 18_3_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 Resorts/4.7.5",
			Result{"iOS", "18.3.2", "Mobile Safari UI/WKWebView", "0.0.0"}},
		{"ipados", "iPadOS 16_2", Result{"iOS", "16.2", "Mobile Safari UI/WKWebView", "0.0.0"}},
		{"crios on a mac is ios", "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/140 Version/11.1.1 Safari/605.1.15",
			Result{"iOS", "0.0.0", "Chrome Mobile iOS", "140"}},
		{"minor cut at first non-digit", "Mozilla/5.0 (iPhone; CPU iPhone OS 12_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) FxiOS/13.2b11866 Mobile/16A366 Safari/605.1.15",
			Result{"iOS", "12.0", "Firefox iOS", "13.2"}},
		{"opera drops the fourth part", "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Mobile Safari/537.36 OPR/83.0.0.0",
			Result{"Android", "10", "Opera Mobile", "83.0.0"}},
		{"yandex drops the fourth part", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/134.0.0.0 YaBrowser/25.4.0.0 Safari/537.36",
			Result{"Windows", "10", "Yandex Browser", "25.4.0"}},
		{"webview", "Mozilla/5.0 (Linux; Android 12; HBP-LX9 Build/HUAWEIHBP-L29; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/99.0.4844.88 Mobile Safari/537.36",
			Result{"Android", "12", "Chrome Mobile WebView", "99.0.4844.88"}},
		{"huawei is not chrome mobile", "Mozilla/5.0 (Linux; Android 10; JNY-LX1; HMSCore 6.15.0.302) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/114.0.5735.196 HuaweiBrowser/15.0.4.312 Mobile Safari/537.3",
			Result{"Android", "10", "Chrome", "114.0.5735.196"}},
		{"bot", "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", Result{"Other", "0.0.0", "Googlebot", "2.1"}},
		{"url after a bot does not replace it", "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
			Result{"Other", "0.0.0", "bingbot", "2.0"}},
		{"crawler in a version", "Foo/crawler", Result{"Other", "0.0.0", "crawler", "0.0.0"}},
		{"cfnetwork app", "ChatGPT/35.1.2 CFNetwork/3826.400.120 Darwin/24.3.0", Result{"iOS", "0.0.0", "ChatGPT", "35.1.2"}},
		{"networking extension", "NetworkingExtension/8613.1.17 CFNetwork/1325.0.1 Darwin/21.1.0",
			Result{"iOS", "0.0.0", "CFNetwork", "21.1.0"}},
		{"cfnetwork alone", "CFNetwork/3.3", Result{"iOS", "0.0.0", "Mobile Safari UI/WKWebView", "0.0.0"}},
		{"axios commas", "axios/1.6.7,6468", Result{"Other", "0.0.0", "axios", "1.6.7.6468"}},
		{"trailing dot dropped", "Chrome/1.", Result{"Other", "0.0.0", "Chrome", "1"}},
		{"lone dot gives an empty version", "Chrome/.", Result{"Other", "0.0.0", "Chrome", ""}},
		{"empty minor kept", "Chrome/1.x.3", Result{"Other", "0.0.0", "Chrome", "1..3"}},
		{"fifth part dropped", "Chrome/1.2.3.4.5", Result{"Other", "0.0.0", "Chrome", "1.2.3.4"}},
		{"oculus says linux but is android", "OculusBrowser/20.1 Linux", Result{"Android", "0.0.0", "Other", "0.0.0"}},
		{"msie", "Mozilla/4.0 (compatible; MSIE 8.0; Windows NT 6.1; Trident/4.0)", Result{"Windows", "7", "IE", "8.0"}},
		{"iemobile", "IEMobile/11.0", Result{"Other", "0.0.0", "IE Mobile", "11.0"}},
		{"chrome os", "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/134.0.0.0 Safari/537.36",
			Result{"Chrome OS", "14541.0.0", "Chrome", "134.0.0.0"}},
		{"apple tv", "AppleTV11,1/11.1", Result{"ATV OS X", "0.0.0", "Other", "0.0.0"}},
		{"ios app: a web view has no version", "MyApp/4.20.0 (iPhone; iOS 16.1; Scale/3.00)", Result{"iOS", "16.1", "Mobile Safari UI/WKWebView", "0.0.0"}},
		{"several-word bot", "Better Uptime Bot", Result{"Other", "0.0.0", "Better Uptime Bot", "0.0.0"}},
		{"first bot wins", "Abot/1 Bbot/2", Result{"Other", "0.0.0", "Abot", "1"}},
		{"a browser after a bot wins", "Googlebot/2.1 GSA/1.2", Result{"Other", "0.0.0", "Google", "1.2"}},
		{"mac os without x skips a token", "Mac OS Chrome/1.2 Firefox/3", Result{"Mac OS X", "0.0.0", "Firefox", "3"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Parse(tc.ua); got != tc.want {
				t.Errorf("Parse(%q)\n got  %+v\n want %+v", tc.ua, got, tc.want)
			}
		})
	}
}

// constNames are the names Parse can report that are not taken from the user agent itself.
var constNames = map[string]bool{
	"Other": true, "iOS": true, "Mac OS X": true, "Windows": true, "Linux": true, "Android": true,
	"ATV OS X": true, "Chromecast": true, "Red Hat": true, "Kindle": true, "Ubuntu": true,
	"Chrome OS": true, "Windows Phone": true, "Firefox Mobile": true, "Firefox": true,
	"Yahoo! Slurp": true, "NetFront NX": true, "Amazon Silk": true, "Yandex Browser": true,
	"Edge Mobile": true, "Edge": true, "Opera Mobile": true, "Opera": true, "axios": true,
	"HeadlessChrome": true, "Chrome Mobile WebView": true, "Chrome Mobile": true, "Chrome": true,
	"CFNetwork": true, "Mobile Safari": true, "Safari": true, "Mobile Safari UI/WKWebView": true,
	"crawler": true, "IE": true, "IE Mobile": true, "Firefox iOS": true, "Chrome Mobile iOS": true,
	"Google": true, "Samsung Internet": true, "Better Uptime Bot": true, "Radius Compilance Bot": true,
	"Uptime Monitoring Bot": true, "AdsBot-Google": true,
}

// checkInvariants checks what must hold for any input: names are known constants or come
// from the input, and an empty version needs a version made of separators only.
func checkInvariants(t *testing.T, ua string, r Result) {
	t.Helper()
	for _, name := range []string{r.OSName, r.BrowserName} {
		if name == "" || (!constNames[name] && !strings.Contains(ua, name)) {
			t.Fatalf("name %q neither known nor from the input, for %q: %+v", name, ua, r)
		}
	}
	for _, v := range []string{r.OSVersion, r.BrowserVersion} {
		if v == "" && !strings.ContainsAny(ua, "._,") {
			t.Fatalf("empty version without a separator in %q: %+v", ua, r)
		}
	}
}

// TestHostileInput runs Parse on inputs no user agent has: far over the length limit, made
// of separators only, with NUL bytes and invalid UTF-8.
func TestHostileInput(t *testing.T) {
	inputs := []string{
		strings.Repeat("Windows ", 100000),
		strings.Repeat("Mac OS ", 100000),
		strings.Repeat("a/1.2.3.4.5.6 ", 50000),
		strings.Repeat("Abot/1 GSA/2 ", 50000),
		strings.Repeat(";", 1<<20),
		strings.Repeat(" ", 1<<20),
		"Chrome/" + strings.Repeat("1_", 1<<19),
		"\xff\xfe\x00Chrome/1.2\x00",
		string([]byte{0, 1, 2, 3, 0x7f, 0x80, 0xc0, 0xff}),
		"Mozilla/5.0 (\xc3(Windows NT 10.0) Chrome/1\xe2\x82.2",
	}
	for _, in := range inputs {
		checkInvariants(t, in, Parse(in))
	}
	if got, want := Parse(strings.Repeat("Windows ", 100000)), (Result{"Windows", "0.0.0", "Other", "0.0.0"}); got != want {
		t.Errorf("repeated Windows: got %+v, want %+v", got, want)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range diffSeeds {
		f.Add(s)
	}
	f.Add("\xff\xfe")
	f.Fuzz(func(t *testing.T, ua string) {
		r := Parse(ua)
		checkInvariants(t, ua, r)
		if r2 := Parse(ua); r2 != r {
			t.Fatalf("not deterministic for %q: %+v then %+v", ua, r, r2)
		}
		// Every cut the rules make is at an ASCII byte, so valid UTF-8 in gives valid UTF-8 out.
		if utf8.ValidString(ua) {
			for _, v := range []string{r.OSName, r.OSVersion, r.BrowserName, r.BrowserVersion} {
				if !utf8.ValidString(v) {
					t.Fatalf("invalid UTF-8 %q from valid input %q", v, ua)
				}
			}
		}
	})
}

var benchSink Result

func BenchmarkParse(b *testing.B) {
	cases := []struct{ name, ua string }{
		{"windows_chrome", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/134.0.0.0 Safari/537.36"},
		{"mac_safari", "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Safari/605.1.15"},
		{"iphone_safari", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 Mobile/15E148 Safari/604.1"},
		{"android_chrome", "Mozilla/5.0 (Linux; Android 13; Pixel 7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.144 Mobile Safari/537.36"},
		{"googlebot", "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"},
		{"limit_1000", strings.Repeat("Mozilla/5.0 (Windows NT 10.0) ", 33)},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(c.ua)))
			for i := 0; i < b.N; i++ {
				benchSink = Parse(c.ua)
			}
		})
	}
	b.Run("corpus", func(b *testing.B) {
		var uas []string
		for _, c := range readAgreed(b) {
			uas = append(uas, c.ua)
		}
		if len(uas) == 0 {
			b.Skip("no corpus")
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			benchSink = Parse(uas[i%len(uas)])
		}
	})
}
