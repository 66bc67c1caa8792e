package wire

import (
	"net/http"
	"testing"
)

func TestHeaderNamesAreCanonical(t *testing.T) {
	for _, h := range []string{HeaderAPIKey, HeaderSDKType, HeaderSDKVersion, HeaderClientTime,
		HeaderEventCount, HeaderSessionID, HeaderRetryCount, HeaderLanguageVersion} {
		if c := http.CanonicalHeaderKey(h); c != h {
			t.Errorf("%s is not canonical (%s): every lookup would canonicalise it again", h, c)
		}
	}
}
