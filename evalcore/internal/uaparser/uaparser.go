// Package uaparser derives OS and browser names and versions from a user agent exactly as
// Statsig's server-core SDK does with its default, first-party parser (statsig_uaparser in
// statsig-io/statsig-server-core, as shipped in statsig-node-core 0.23.2).
//
// That parser is a hand-written tokenizer, not a regex set: it splits the user agent on ' '
// and ';', walks a four-token window and collects tags, versions and "hints", then decides the
// OS and the browser from them. Its output is not what uap-core's regexes give (families such as
// "Other", versions with four parts, "0.0.0" when unknown), so ua_based conditions only evaluate
// like the reference when this port reproduces its quirks too, including the odd ones. Where a
// rule looks strange below, it is because the reference does it that way; the differential test
// (difftest_test.go) is what keeps it honest.
//
// Parse is pure and allocation-free: all results are substrings of the input or constants.
package uaparser

// Result is what Statsig's first-party parser derives from a user agent.
type Result struct{ OSName, OSVersion, BrowserName, BrowserVersion string }

// unknownVersion is what the reference reports when it found no version at all.
const unknownVersion = "0.0.0"

// Parse parses ua. It never panics, whatever the input (huge, non-UTF-8, control characters).
//
// It works on bytes and never decodes UTF-8, so invalid sequences are just bytes that match no
// rule, as in the reference (where the Node binding has already replaced them). Work is linear
// in len(ua); callers apply SC's 1000-character limit before calling.
func Parse(ua string) Result {
	var st state
	st.tokenize(ua)
	var r Result
	r.OSName, r.OSVersion = st.decideOS()
	r.BrowserName, r.BrowserVersion = st.decideBrowser()
	return r
}

// tok is one recorded tag with its version. The reference keeps Option<&str> versions, but a
// present version is never empty (empty pieces become None when trimmed), so "" means none.
type tok struct {
	tag, ver string
	ok       bool // the token exists at all
}

// osRule and browserRule index the tag categories that the reference's decision loops look for.
// The reference first builds the whole token list and then scans it; recording, per category,
// the first (or, where the reference keeps overwriting, the last) token is equivalent and needs
// no list, which keeps Parse free of allocations and bounded on any input.
const (
	osATV = iota
	osIOS
	osCPUOS
	osVersion
	osAndroid
	osAndroidPrefix
	osChromecast
	osRedHat
	osKindle
	osUbuntu
	numOSRules
)

const (
	brFirefox = iota
	brYahooSlurp
	brSilk
	brNetFrontNX
	brYaBrowser
	brEdge
	brOpera
	brAxios
	brHeadlessChrome
	numBrowserRules
)

// state is the tokenizer's result: the reference's TokenizerResult, folded into what the
// decisions read.
type state struct {
	n int // number of tokens added so far (the reference's position counter)

	first, second tok // tokens[0] and tokens[1], read by the CFNetwork rule

	osFirst   [numOSRules]tok
	osFirstAt [numOSRules]int
	brFirst   [numBrowserRules]tok
	brFirstAt [numBrowserRules]int

	lastAndroid, lastVersion, lastChrome tok

	possibleOS, possibleBrowser tok
	botSeen                     bool // a bot token has been the browser candidate

	linuxHint, iosHint, macosHint, windowsHint, mobileHint, safariHint bool
	playstationHint, huaweiHint, cfnetworkHint, crawlerHint            bool
}

// addTag records a token, as the reference's add_tag pushing onto its token list.
func (s *state) addTag(tag, ver string) {
	t := tok{tag: tag, ver: ver, ok: true}
	switch s.n {
	case 0:
		s.first = t
	case 1:
		s.second = t
	}
	if r := osRuleOf(tag); r >= 0 && !s.osFirst[r].ok {
		s.osFirst[r] = t
		s.osFirstAt[r] = s.n
	}
	if r := browserRuleOf(tag); r >= 0 && !s.brFirst[r].ok {
		s.brFirst[r] = t
		s.brFirstAt[r] = s.n
	}
	switch tag {
	case "Android":
		s.lastAndroid = t
	case "Version":
		s.lastVersion = t
	case "Chrome":
		s.lastChrome = t
	}
	s.n++
}

func osRuleOf(tag string) int {
	switch tag {
	case "ATV OS X":
		return osATV
	case "iPhone OS", "iOS":
		return osIOS
	case "CPU OS":
		return osCPUOS
	case "Version":
		return osVersion
	case "Android":
		return osAndroid
	case "Chromecast":
		return osChromecast
	case "Red Hat":
		return osRedHat
	case "Kindle":
		return osKindle
	case "Ubuntu":
		return osUbuntu
	}
	if hasPrefix(tag, "Android") {
		return osAndroidPrefix
	}
	return -1
}

func browserRuleOf(tag string) int {
	switch tag {
	case "Firefox":
		return brFirefox
	case "Yahoo! Slurp":
		return brYahooSlurp
	case "Silk":
		return brSilk
	case "NetFront NX":
		return brNetFrontNX
	case "YaBrowser":
		return brYaBrowser
	case "Edge":
		return brEdge
	case "Opera":
		return brOpera
	case "axios":
		return brAxios
	case "HeadlessChrome":
		return brHeadlessChrome
	}
	return -1
}

// addPossibleOS keeps the first OS candidate that has a version.
func (s *state) addPossibleOS(tag, ver string) {
	if !s.possibleOS.ok && ver != "" {
		s.possibleOS = tok{tag: tag, ver: ver, ok: true}
	}
}

// overridePossibleOS replaces the OS candidate, version or not (EdgiOS, CriOS, OculusBrowser).
func (s *state) overridePossibleOS(tag, ver string) {
	s.possibleOS = tok{tag: tag, ver: ver, ok: true}
}

// addPossibleBrowser keeps the last browser candidate that has a version.
func (s *state) addPossibleBrowser(tag, ver string) {
	if ver == "" {
		return
	}
	// The reference skips a URL-like tag when it already has a candidate; none of the fixed
	// browser names passed here is URL-like, so only the replacement remains.
	s.possibleBrowser = tok{tag: tag, ver: ver, ok: true}
}

// addPossibleBot makes the first bot token the browser candidate, version or not: bot user
// agents often name themselves again later ("abot/1.0 (abot; ...)"), and the first mention is
// the one with the version. A later browser with a version still replaces it.
func (s *state) addPossibleBot(tag, ver string) {
	if s.botSeen {
		return
	}
	s.botSeen = true
	s.possibleBrowser = tok{tag: tag, ver: ver, ok: true}
}

// window is the reference's four-token sliding window over the user agent split on ' ' and
// ';'. Empty pieces (from doubled separators) are kept: they occupy a slot, which matters for
// the look-ahead rules ("Windows  NT 10.0" has no NT version for the reference).
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

// pushNext appends the next piece of the input, if any.
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
	w.buf[(w.start+w.size)&3] = piece
	w.size++
}

func (w *window) slide(n int) {
	for ; n > 0 && w.size > 0; n-- {
		w.start = (w.start + 1) & 3
		w.size--
		w.pushNext()
	}
}

// at returns the i-th piece of the window, trimmed; "" when absent or trimmed away.
func (w *window) at(i int) string {
	if i >= w.size {
		return ""
	}
	return trimInvalid(w.buf[(w.start+i)&3])
}

// consumeIfNumeric returns t and slides past it when it starts with an ASCII digit.
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

func hasPrefix(s, p string) bool { return len(s) >= len(p) && s[:len(p)] == p }

func contains(s, sub string) bool {
	n := len(sub)
	for i := 0; i+n <= len(s); i++ {
		if s[i:i+n] == sub {
			return true
		}
	}
	return false
}

// cutAny splits s at the first '/', ';' or ':'.
func cutAny(s string) (before, after string, found bool) {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '/', ';', ':':
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

// tokenize is the reference's Tokenizer::run.
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
		case hasPrefix(curr, "AppleTV"):
			s.addTag("ATV OS X", "")
			w.slide(1)
		case curr == "like" && next1 == "Mac" && next2 == "OS":
			// "like Mac OS X" in iOS user agents must not make the device a Mac.
			w.slide(3)
		case curr == "Mac" && next1 == "OS" && next2 == "X":
			s.macosHint = true
			s.addPossibleOSTag("Mac OS X", w.consumeIfNumeric(next3))
			w.slide(2)
		case curr == "Mac" && next1 == "OS":
			// The reference skips as if an "X" were there, so the token after the version (or
			// after "Mac OS", when no version follows) is never looked at.
			s.macosHint = true
			s.addPossibleOSTag("Mac OS X", w.consumeIfNumeric(next2))
			w.slide(2)
		case curr == "iOS" || curr == "iPadOS":
			s.addPossibleOSTag("iOS", w.consumeIfNumeric(next1))
			s.iosHint = true
			w.slide(1)
		case curr == "iPhone" && next1 == "OS":
			s.addPossibleOSTag("iOS", w.consumeIfNumeric(next2))
			w.slide(1)
		case hasPrefix(curr, "iPad"):
			s.iosHint = true
			s.addTag("iPad", trimInvalid(afterFirst(curr, "iPad")))
		case hasPrefix(curr, "iPhone"):
			s.iosHint = true
			s.addTag("iPhone", trimInvalid(afterFirst(curr, "iPhone")))
		case hasPrefix(curr, "Apple-iPhone7C2"):
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
		case hasPrefix(curr, "Windows"):
			s.windowsHint = true
			var v string
			switch {
			case next1 == "NT":
				if v = w.consumeIfNumeric(next2); v != "" {
					w.slide(1) // the "NT" as well
				}
			case hasPrefix(next1, "XP"):
				w.slide(1)
				v = "XP"
			default:
				v = w.consumeIfNumeric(next1)
			}
			s.addPossibleOSTag("Windows", v)
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
		case curr == "MSIE":
			s.addPossibleBrowserTag("IE", w.consumeIfNumeric(next1))
		case curr == "like" || len(curr) <= 2:
			w.slide(1)
			continue
		default:
			s.tokenizeRest(curr)
		}
		w.slide(1)
	}
}

// tokenizeRest handles a token with no special meaning for the window: "tag/version" (or
// "tag;version", "tag:version"), with some tags renamed or turned into hints.
func (s *state) tokenizeRest(curr string) {
	tag, ver := curr, ""
	if before, after, found := cutAny(curr); found {
		// A token like "/5" keeps its whole text as the tag.
		if t := trimInvalid(before); t != "" {
			tag = t
		}
		ver = trimInvalid(after)
	}
	switch {
	case tag == "Kindle":
		s.addPossibleOS("Kindle", ver)
		s.addPossibleBrowserTag("Kindle", ver)
	case tag == "FxiOS":
		s.addPossibleBrowserTag("Firefox iOS", ver)
	case tag == "EdgiOS":
		// Edge on iOS claims to be a Mac; the OS is iOS after all.
		if s.possibleOS.ok && s.possibleOS.tag == "Mac OS X" {
			s.overridePossibleOS("iOS", "")
		}
		s.addPossibleBrowserTag("Edge Mobile", ver)
	case tag == "CriOS":
		s.iosHint = true
		if s.possibleOS.ok && s.possibleOS.tag == "Mac OS X" {
			s.overridePossibleOS("iOS", "")
		}
		s.addPossibleBrowserTag("Chrome Mobile iOS", ver)
	case tag == "GSA":
		s.addPossibleBrowserTag("Google", ver)
	case tag == "YisouSpider":
		s.addPossibleBrowserTag("YisouSpider", ver)
	case tag == "Edg" || tag == "Edge":
		s.addTag("Edge", ver)
	case tag == "OPR":
		s.addTag("Opera", ver)
	case tag == "SamsungBrowser":
		s.addPossibleBrowserTag("Samsung Internet", ver)
	case tag == "HuaweiBrowser":
		s.huaweiHint = true
		s.addTag("HuaweiBrowser", ver)
	case tag == "ChatGPT-User":
		s.addPossibleBrowserTag("ChatGPT-User", ver)
	case tag == "OAI-SearchBot":
		s.addPossibleBrowserTag("OAI-SearchBot", ver)
	case tag == "NX":
		s.addPossibleBrowserTag("NetFront NX", ver)
	case tag == "Electron":
		s.addPossibleBrowserTag("Electron", ver)
	case tag == "IEMobile":
		s.addPossibleBrowserTag("IE Mobile", ver)
	case contains(tag, "Bot") || contains(tag, "bot") || contains(tag, "crawler") || contains(tag, "Crawler"):
		// Bots are named by their token even without a version, and are not tokens.
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
	case contains(tag, "crawler") || contains(ver, "crawler"):
		s.crawlerHint = true
	case tag == "OculusBrowser":
		// The Quest browser says Linux, but the reference calls it Android.
		s.overridePossibleOS("Android", "")
	default:
		s.addTag(tag, ver)
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

// afterFirst returns what follows the first sep in s up to the next sep, as Rust's
// s.split(sep).nth(1) does.
func afterFirst(s, sep string) string {
	i := index(s, sep)
	if i < 0 {
		return ""
	}
	rest := s[i+len(sep):]
	if j := index(rest, sep); j >= 0 {
		return rest[:j]
	}
	return rest
}

func index(s, sub string) int {
	n := len(sub)
	for i := 0; i+n <= len(s); i++ {
		if s[i:i+n] == sub {
			return i
		}
	}
	return -1
}
