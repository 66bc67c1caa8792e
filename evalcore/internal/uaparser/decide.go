package uaparser

import "strings"

// decideOS is the reference's parse_os: the first OS candidate that had a version, else the
// first token that names an OS, else a hint, else "Other".
func (s *state) decideOS() (name, version string) {
	if s.possibleOS.ok() {
		return s.possibleOS.tag, versionOf(s.possibleOS)
	}

	// The reference scans its tokens in order and stops at the first that names an OS. "CPU OS"
	// counts only for iOS devices, and "Version" only when the user agent also claims a Mac.
	kind, at, t := s.osTokKind, s.osTokAt, s.osTok
	if s.cpuOS.ok() && s.iosHint && (kind == osNone || s.cpuOSAt < at) {
		kind, at, t = osIOS, s.cpuOSAt, s.cpuOS
	}
	if s.firstVer.ok() && s.iosHint && s.macosHint && (kind == osNone || s.firstVerAt < at) {
		kind, t = osIOS, s.firstVer
	}
	switch kind {
	case osATV:
		return "ATV OS X", unknownVersion
	case osIOS:
		return "iOS", versionOf(t)
	case osAndroid:
		return "Android", versionOf(t)
	case osAndroidPrefix:
		return "Android", unknownVersion
	case osChromecast:
		return "Chromecast", unknownVersion
	case osRedHat:
		return "Red Hat", unknownVersion
	case osKindle:
		return "Kindle", versionOf(t)
	case osUbuntu:
		return "Ubuntu", versionOf(t)
	}

	switch {
	case s.iosHint:
		return "iOS", unknownVersion
	case s.macosHint:
		return "Mac OS X", unknownVersion
	case s.windowsHint:
		return "Windows", unknownVersion
	case s.linuxHint:
		return "Linux", unknownVersion
	}
	return "Other", unknownVersion
}

// decideBrowser is the reference's parse_browser.
func (s *state) decideBrowser() (name, version string) {
	if s.possibleBrowser.ok() {
		return s.possibleBrowser.tag, versionOf(s.possibleBrowser)
	}

	if t := s.brTok; t.ok() {
		switch t.tag {
		case "Firefox":
			if s.mobileHint {
				return "Firefox Mobile", versionOf(t)
			}
			return "Firefox", versionOf(t)
		case "Yahoo! Slurp":
			return "Yahoo! Slurp", unknownVersion
		case "Silk":
			if s.playstationHint {
				return "NetFront NX", unknownVersion
			}
			return "Amazon Silk", versionOf(t)
		case "NetFront NX":
			return "NetFront NX", versionOf(t)
		case "YaBrowser":
			return "Yandex Browser", versionOf(t)
		case "Edge":
			if s.mobileHint {
				return "Edge Mobile", versionOf(t)
			}
			return "Edge", versionOf(t)
		case "Opera":
			if s.mobileHint {
				return "Opera Mobile", versionOf(t)
			}
			return "Opera", versionOf(t)
		default: // axios, HeadlessChrome
			return t.tag, versionOf(t)
		}
	}

	if c := s.lastChrome; c.ok() {
		switch {
		case s.lastVersion.ok():
			return "Chrome Mobile WebView", versionOf(c)
		case s.mobileHint && c.ver != "" && !s.huaweiHint:
			return "Chrome Mobile", versionOf(c)
		case c.ver == "" && s.lastAndroid.ok():
			return "Android", versionOf(s.lastAndroid)
		}
		return "Chrome", versionOf(c)
	}
	if s.lastAndroid.ok() {
		return "Android", versionOf(s.lastAndroid)
	}
	if s.cfnetworkHint && s.first.ok() {
		// An app names itself first in a CFNetwork user agent. (The reference reads tokens[0]
		// and tokens[1]; where they do not exist it skips the rule or reports no version.)
		if s.first.tag == "NetworkingExtension" {
			if s.second.ok() {
				return "CFNetwork", versionOf(s.second)
			}
			return "CFNetwork", unknownVersion
		}
		return s.first.tag, versionOf(s.first)
	}
	if s.safariHint {
		v := unknownVersion
		if s.lastVersion.ok() {
			v = versionOf(s.lastVersion)
		}
		if s.mobileHint && !s.macosHint {
			return "Mobile Safari", v
		}
		return "Safari", v
	}
	if s.iosHint {
		// An in-app web view: the reference reports no version (it once gave the OS version).
		return "Mobile Safari UI/WKWebView", unknownVersion
	}
	if s.crawlerHint {
		return "crawler", unknownVersion
	}
	return "Other", unknownVersion
}

// versionOf is the reference's Token::get_version followed by Version::get_version_string.
func versionOf(t tok) string {
	v := t.ver
	if v == "" {
		return unknownVersion
	}
	if t.tag == "Windows" {
		// Only the NT kernel versions the reference knows; anything else, including the "XP"
		// it reads from "Windows XP", is unknown.
		switch v {
		case "5.1", "5.2":
			return "XP"
		case "6.0":
			return "Vista"
		case "6.1":
			return "7"
		case "6.3":
			return "8.1"
		case "10.0":
			return "10"
		}
		return unknownVersion
	}
	maxParts := 4
	switch t.tag {
	case "YaBrowser", "Opera", "NetFront NX":
		maxParts = 3 // the reference drops their fourth part
	}
	return formatVersion(v, maxParts)
}

func isVersionSep(c byte) bool { return c == '_' || c == ',' || c == '.' }

// formatVersion splits v on '_', ',' and '.' the way Rust's split_terminator does (a trailing
// empty piece is dropped), keeps up to maxParts pieces, cuts the second at its first non-digit
// and joins them with '.'. When that equals a prefix of v (the usual "1.2.3.4") the result is
// a substring and nothing is allocated.
func formatVersion(v string, maxParts int) string {
	var starts, ends [4]int
	n := 0
	for i := 0; n < maxParts; {
		j := i
		for j < len(v) && !isVersionSep(v[j]) {
			j++
		}
		starts[n], ends[n] = i, j
		n++
		if j == len(v) {
			break
		}
		i = j + 1
		if i == len(v) {
			break // v ends with a separator: no empty last piece
		}
	}
	if n > 1 {
		k := starts[1]
		for k < ends[1] && isDigit(v[k]) {
			k++
		}
		ends[1] = k
	}

	prefix := true
	for k := 1; k < n; k++ {
		if v[ends[k-1]] != '.' || starts[k] != ends[k-1]+1 {
			prefix = false
			break
		}
	}
	if prefix {
		return v[:ends[n-1]]
	}

	size := n - 1
	for k := 0; k < n; k++ {
		size += ends[k] - starts[k]
	}
	var b strings.Builder
	b.Grow(size)
	for k := 0; k < n; k++ {
		if k > 0 {
			b.WriteByte('.')
		}
		b.WriteString(v[starts[k]:ends[k]])
	}
	return b.String()
}
