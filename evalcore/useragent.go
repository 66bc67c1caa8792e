package evalcore

import "github.com/sigedge/sigedge/evalcore/internal/uaparser"

// defaultUserAgentParser is SC's first-party user-agent parser.
func defaultUserAgentParser(ua string) UserAgent {
	r := uaparser.Parse(ua)
	return UserAgent{OSName: r.OSName, OSVersion: r.OSVersion, BrowserName: r.BrowserName, BrowserVersion: r.BrowserVersion}
}
