// Package uaparser derives OS and browser names and versions from a user agent exactly as
// Statsig's server-core SDK does with its default, first-party parser (statsig_uaparser in
// statsig-io/statsig-server-core, as shipped in statsig-node-core 0.23.2).
//
// That parser is a hand-written tokenizer, not a regex set: it splits the user agent on ' '
// and ';', walks a four-token window collecting tags, versions and "hints", then decides the OS
// and the browser from them. Its answers are not uap-core's (families such as "Other", versions
// with four parts, "0.0.0" when unknown), so ua_based conditions only evaluate like the
// reference when this port reproduces its quirks too, odd ones included. Where a rule below
// looks strange, the reference does it that way; the differential test (difftest_test.go) is
// what keeps the port honest, and testdata/agreed.jsonl records the reference's answers.
package uaparser

import "strings"

// Result is what Statsig's first-party parser derives from a user agent.
type Result struct{ OSName, OSVersion, BrowserName, BrowserVersion string }

// unknownVersion is what the reference reports when it found no version at all.
const unknownVersion = "0.0.0"

// Parse parses ua. It never panics, whatever the input (huge, non-UTF-8, control characters).
//
// It works on bytes and never decodes UTF-8: every separator and trimmed character of the
// reference is ASCII, so invalid sequences are just bytes that match no rule. Time is linear in
// len(ua) and memory constant. Names and versions are constants or substrings of ua; only a
// version whose separators must be rewritten ("10_15_7" is reported as "10.15.7") allocates.
// Callers apply SC's limit (a user agent over 1000 bytes is not parsed at all) before calling.
func Parse(ua string) Result {
	var s state
	s.tokenize(ua)
	var r Result
	r.OSName, r.OSVersion = s.decideOS()
	r.BrowserName, r.BrowserVersion = s.decideBrowser()
	return r
}

// tok is one recorded tag with its version. Tags are never empty, so tag == "" means "no
// token". The reference keeps Option<&str> versions, but a present version is never empty
// (empty pieces become None when trimmed), so ver == "" means none.
type tok struct{ tag, ver string }

func (t tok) ok() bool { return t.tag != "" }

// osKind says what the first OS-naming token was (see decideOS).
type osKind uint8

const (
	osNone osKind = iota
	osATV
	osIOS
	osAndroid
	osAndroidPrefix // a tag that starts with "Android" names the OS but no version
	osChromecast
	osRedHat
	osKindle
	osUbuntu
)

// state is what the tokenizer leaves for the decisions: the reference's TokenizerResult,
// folded. The reference builds a token list and then scans it for the first (or last) token
// with a given tag; recording those tokens while tokenizing gives the same answers with no
// list, so Parse needs no allocation and constant memory on any input.
type state struct {
	n             int // tokens added so far
	first, second tok // tokens[0] and tokens[1], read by the CFNetwork rule

	// The OS scan stops at the first token that names an OS. "CPU OS" and "Version" tokens
	// only count with hints that are known at the end, so they are kept apart, with positions.
	osTok               tok
	osTokKind           osKind
	osTokAt             int
	cpuOS, firstVer     tok
	cpuOSAt, firstVerAt int

	// The browser scan stops at the first token of a browser that wins outright; Chrome,
	// Android and Version tokens only decide when there is none, and then the last ones count.
	brTok                                tok
	lastAndroid, lastVersion, lastChrome tok

	possibleOS, possibleBrowser tok
	botSeen                     bool // a bot has been the browser candidate once

	linuxHint, iosHint, macosHint, windowsHint, mobileHint, safariHint bool
	playstationHint, huaweiHint, cfnetworkHint, crawlerHint            bool
}

// addTag records a token, as the reference's add_tag appending to its token list.
func (s *state) addTag(tag, ver string) {
	t := tok{tag, ver}
	switch s.n {
	case 0:
		s.first = t
	case 1:
		s.second = t
	}
	kind := osNone
	switch tag {
	case "ATV OS X":
		kind = osATV
	case "iPhone OS", "iOS":
		kind = osIOS
	case "Android":
		kind = osAndroid
		s.lastAndroid = t
	case "Chromecast":
		kind = osChromecast
	case "Red Hat":
		kind = osRedHat
	case "Kindle":
		kind = osKindle
	case "Ubuntu":
		kind = osUbuntu
	case "CPU OS":
		if !s.cpuOS.ok() {
			s.cpuOS, s.cpuOSAt = t, s.n
		}
	case "Version":
		if !s.firstVer.ok() {
			s.firstVer, s.firstVerAt = t, s.n
		}
		s.lastVersion = t
	case "Chrome":
		s.lastChrome = t
	case "Firefox", "Yahoo! Slurp", "Silk", "NetFront NX", "YaBrowser", "Edge", "Opera", "axios", "HeadlessChrome":
		if !s.brTok.ok() {
			s.brTok = t
		}
	default:
		if strings.HasPrefix(tag, "Android") {
			kind = osAndroidPrefix
		}
	}
	if kind != osNone && s.osTokKind == osNone {
		s.osTok, s.osTokKind, s.osTokAt = t, kind, s.n
	}
	s.n++
}

// addPossibleOS keeps the first OS candidate that has a version.
func (s *state) addPossibleOS(tag, ver string) {
	if !s.possibleOS.ok() && ver != "" {
		s.possibleOS = tok{tag, ver}
	}
}

// addPossibleBrowser keeps the last browser candidate that has a version. (The reference also
// refuses a URL-like tag here when it has a candidate already, but no tag passed here can be.)
func (s *state) addPossibleBrowser(tag, ver string) {
	if ver != "" {
		s.possibleBrowser = tok{tag, ver}
	}
}

// addPossibleBot makes the first bot the browser candidate, version or not: bots tend to name
// themselves again later ("abot/1.0 (abot; ...)"), and the first mention carries the version.
// A later browser with a version still replaces it.
func (s *state) addPossibleBot(tag, ver string) {
	if !s.botSeen {
		s.botSeen = true
		s.possibleBrowser = tok{tag, ver}
	}
}

func (s *state) addPossibleOSTag(tag, ver string) {
	s.addPossibleOS(tag, ver)
	s.addTag(tag, ver)
}

func (s *state) addPossibleBrowserTag(tag, ver string) {
	s.addPossibleBrowser(tag, ver)
	s.addTag(tag, ver)
}

// window is the reference's four-token sliding window over the user agent split on ' ' and
// ';'. Empty pieces (from doubled separators) are kept: they take a slot, which matters for the
// look-ahead rules ("Windows  NT 10.0" has no NT version for the reference). Pieces are stored
// trimmed, as the reference trims each one before looking at it.
type window struct {
	rest  string
	done  bool
	buf   [4]string
	start int
	size  int
}

func (w *window) init(s string) {
	w.rest = s
	for i := 0; i < 4; i++ {
		w.pushNext()
	}
}

// pushNext appends the next piece of the input, if there is one.
func (w *window) pushNext() {
	if w.done {
		return
	}
	i := 0
	for i < len(w.rest) && w.rest[i] != ' ' && w.rest[i] != ';' {
		i++
	}
	piece := w.rest[:i]
	if i == len(w.rest) {
		w.done = true
		w.rest = ""
	} else {
		w.rest = w.rest[i+1:]
	}
	w.buf[(w.start+w.size)&3] = trimInvalid(piece)
	w.size++
}

func (w *window) slide(n int) {
	for ; n > 0 && w.size > 0; n-- {
		w.start = (w.start + 1) & 3
		w.size--
		w.pushNext()
	}
}

// at returns the i-th piece of the window; "" when absent or trimmed away (None).
func (w *window) at(i int) string {
	if i >= w.size {
		return ""
	}
	return w.buf[(w.start+i)&3]
}

// consumeIfNumeric returns t, and slides the window by one, when t starts with an ASCII digit.
// The slide drops the window's front, not t itself, exactly as the reference does; the rules
// below count their slides with that in mind.
func (w *window) consumeIfNumeric(t string) string {
	if t != "" && isDigit(t[0]) {
		w.slide(1)
		return t
	}
	return ""
}

func isInvalidEdge(c byte) bool {
	switch c {
	case '(', ')', ';', ',', '+', '_', '"':
		return true
	}
	return false
}

// trimInvalid strips the punctuation that surrounds tokens in user agents.
func trimInvalid(s string) string {
	i, j := 0, len(s)
	for i < j && isInvalidEdge(s[i]) {
		i++
	}
	for j > i && isInvalidEdge(s[j-1]) {
		j--
	}
	return s[i:j]
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// tokenize is the reference's Tokenizer::run. The order of the cases matters: the first that
// matches wins.
func (s *state) tokenize(ua string) {
	var w window
	w.init(ua)
	for w.size > 0 {
		curr, next1, next2, next3 := w.at(0), w.at(1), w.at(2), w.at(3)
		if curr == "" {
			w.slide(1)
			continue
		}
		switch {
		case strings.HasPrefix(curr, "AppleTV"):
			s.addTag("ATV OS X", "")
			w.slide(1)
		case curr == "like" && next1 == "Mac" && next2 == "OS":
			// "like Mac OS X" in iOS user agents must not make the device a Mac.
			w.slide(3)
		case curr == "Mac" && next1 == "OS":
			// Without the "X" the reference still skips as if it were there, so the token after
			// "Mac OS <version>" (or after "Mac OS", when no version follows) goes unseen.
			s.macosHint = true
			v := next2
			if next2 == "X" {
				v = next3
			}
			s.addPossibleOSTag("Mac OS X", w.consumeIfNumeric(v))
			w.slide(2)
		case curr == "iOS" || curr == "iPadOS":
			s.addPossibleOSTag("iOS", w.consumeIfNumeric(next1))
			s.iosHint = true
			w.slide(1)
		case curr == "iPhone" && next1 == "OS":
			s.addPossibleOSTag("iOS", w.consumeIfNumeric(next2))
			w.slide(1)
		case strings.HasPrefix(curr, "iPad"):
			s.iosHint = true
			s.addTag("iPad", trimInvalid(secondPiece(curr, "iPad")))
		case strings.HasPrefix(curr, "iPhone"):
			s.iosHint = true
			s.addTag("iPhone", trimInvalid(secondPiece(curr, "iPhone")))
		case strings.HasPrefix(curr, "Apple-iPhone7C2"):
			s.iosHint = true
			s.addTag("iPhone", "")
		case curr == "CPU" && next1 == "OS":
			s.addTag("CPU OS", w.consumeIfNumeric(next2))
			w.slide(1)
		case curr == "CrOS":
			// "CrOS x86_64 14541.0.0": the version may follow the architecture.
			v := w.consumeIfNumeric(next1)
			if v == "" {
				w.slide(1)
				v = w.consumeIfNumeric(next2)
			}
			s.addPossibleOSTag("Chrome OS", v)
		case curr == "CrKey":
			s.addPossibleOSTag("Chromecast", "")
		case curr == "PlayStation":
			s.playstationHint = true
			s.addTag("PlayStation", "")
		case curr == "Android":
			s.addPossibleOSTag("Android", w.consumeIfNumeric(next1))
		case curr == "Windows" && next1 == "Phone":
			s.addPossibleOSTag("Windows Phone", w.consumeIfNumeric(next2))
			w.slide(1)
		case strings.HasPrefix(curr, "Windows"):
			s.windowsHint = true
			var v string
			switch {
			case next1 == "NT":
				if v = w.consumeIfNumeric(next2); v != "" {
					w.slide(1) // past the "NT" as well
				}
			case strings.HasPrefix(next1, "XP"):
				w.slide(1)
				v = "XP"
			default:
				v = w.consumeIfNumeric(next1)
			}
			s.addPossibleOSTag("Windows", v)
		case curr == "MSIE":
			s.addPossibleBrowserTag("IE", w.consumeIfNumeric(next1))
		case curr == "Yahoo!" && next1 == "Slurp":
			s.addTag("Yahoo! Slurp", "")
			w.slide(1)
		case curr == "Red" && next1 == "Hat":
			s.addPossibleOSTag("Red Hat", "")
			w.slide(1)
		case curr == "Ubuntu":
			s.addPossibleOSTag("Ubuntu", w.consumeIfNumeric(next1))
		case curr == "Mobile":
			s.mobileHint = true
			s.addTag("Mobile", "")
		case curr == "Linux" || curr == "linux":
			s.linuxHint = true
			s.addTag("Linux", "")
		case curr == "Nintendo" && next1 == "3DS":
			s.addTag("NetFront NX", "")
			w.slide(1)
		case curr == "Better" && next1 == "Uptime" && next2 == "Bot":
			// Monitoring bots named in several words; no word alone means anything.
			s.addPossibleBot("Better Uptime Bot", "")
			w.slide(2)
		case curr == "Radius" && next1 == "Compilance" && next2 == "Bot":
			s.addPossibleBot("Radius Compilance Bot", "")
			w.slide(2)
		case curr == "Uptime" && next1 == "Monitoring" && next2 == "Bot":
			s.addPossibleBot("Uptime Monitoring Bot", "")
			w.slide(2)
		case curr == "AdsBot-Google-Mobile":
			s.addPossibleBot("AdsBot-Google", "")
		case curr == "like" || len(curr) <= 2:
			w.slide(1)
			continue
		default:
			s.tokenizeRest(curr)
		}
		w.slide(1)
	}
}

// tokenizeRest handles a token the window rules did not take: "tag/version" (or "tag:version";
// a ';' cannot be left in a token), some tags renamed or turned into hints.
func (s *state) tokenizeRest(curr string) {
	tag, ver := curr, ""
	if i := indexVersionSep(curr); i >= 0 {
		// A token like "/5" keeps its whole text as the tag.
		if t := trimInvalid(curr[:i]); t != "" {
			tag = t
		}
		ver = trimInvalid(curr[i+1:])
	}
	switch tag {
	case "Kindle":
		s.addPossibleOS("Kindle", ver)
		s.addPossibleBrowserTag("Kindle", ver)
		return
	case "FxiOS":
		s.addPossibleBrowserTag("Firefox iOS", ver)
		return
	case "EdgiOS":
		// Edge on iPadOS claims to be a Mac; the OS is iOS after all.
		s.macToIOS()
		s.addPossibleBrowserTag("Edge Mobile", ver)
		return
	case "CriOS":
		s.iosHint = true
		s.macToIOS()
		s.addPossibleBrowserTag("Chrome Mobile iOS", ver)
		return
	case "GSA":
		s.addPossibleBrowserTag("Google", ver)
		return
	case "YisouSpider":
		s.addPossibleBrowserTag("YisouSpider", ver)
		return
	case "Edg", "Edge":
		s.addTag("Edge", ver)
		return
	case "OPR":
		s.addTag("Opera", ver)
		return
	case "SamsungBrowser":
		s.addPossibleBrowserTag("Samsung Internet", ver)
		return
	case "HuaweiBrowser":
		s.huaweiHint = true
		s.addTag("HuaweiBrowser", ver)
		return
	case "ChatGPT-User", "OAI-SearchBot", "Electron":
		s.addPossibleBrowserTag(tag, ver)
		return
	case "NX":
		s.addPossibleBrowserTag("NetFront NX", ver)
		return
	case "IEMobile":
		s.addPossibleBrowserTag("IE Mobile", ver)
		return
	}
	switch {
	case isBotTag(tag):
		// A bot is named by its token, even without a version, and is not a token itself.
		s.addPossibleBot(tag, ver)
	case tag == "Mobile":
		s.mobileHint = true
		s.addTag("Mobile", ver)
	case tag == "Safari":
		s.safariHint = true
		s.addTag("Safari", ver)
	case tag == "CFNetwork":
		s.cfnetworkHint = true
		s.iosHint = true
	case strings.Contains(ver, "crawler"): // a "crawler" tag was taken as a bot above
		s.crawlerHint = true
	case tag == "OculusBrowser":
		// The Quest browser says Linux; the reference calls it Android.
		s.possibleOS = tok{"Android", ""}
	default:
		s.addTag(tag, ver)
	}
}

// indexVersionSep is strings.IndexAny(s, "/;:") without building a character set per call.
func indexVersionSep(s string) int {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '/' || c == ';' || c == ':' {
			return i
		}
	}
	return -1
}

// macToIOS turns a "Mac OS X" OS candidate into iOS without a version: iOS browsers in
// desktop mode claim to be Macs.
func (s *state) macToIOS() {
	if s.possibleOS.tag == "Mac OS X" {
		s.possibleOS = tok{"iOS", ""}
	}
}

// isBotTag reports whether tag contains "Bot", "bot", "crawler" or "Crawler".
func isBotTag(tag string) bool {
	for i := 1; i+1 < len(tag); i++ {
		switch tag[i] {
		case 'o':
			if tag[i+1] == 't' && (tag[i-1] == 'B' || tag[i-1] == 'b') {
				return true
			}
		case 'r':
			if strings.HasPrefix(tag[i:], "rawler") && (tag[i-1] == 'c' || tag[i-1] == 'C') {
				return true
			}
		}
	}
	return false
}

// secondPiece returns what follows the first sep in s, up to the next sep (Rust's
// s.split(sep).nth(1)).
func secondPiece(s, sep string) string {
	_, rest, found := strings.Cut(s, sep)
	if !found {
		return ""
	}
	piece, _, _ := strings.Cut(rest, sep)
	return piece
}
