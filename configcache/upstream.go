package configcache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/sigedge/sigedge/internal/wire"
)

// maxUpstreamBody bounds one upstream response (rule sets are ~0.5 MB; ID-list files can be large).
const maxUpstreamBody = 256 << 20

// StatusError is a non-2xx answer from Statsig.
type StatusError struct {
	Op     string
	Status int
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("%s: Statsig answered %d %s", e.Op, e.Status, http.StatusText(e.Status))
}

// refused reports whether Statsig refused the key itself (as opposed to failing).
func refused(err error) bool {
	var se *StatusError
	return errors.As(err, &se) && (se.Status == http.StatusUnauthorized || se.Status == http.StatusForbidden)
}

// upstream is the HTTP client of Statsig's rule-set and ID-list endpoints.
type upstream struct {
	client    *http.Client
	cdn, api  string
	timeout   time.Duration
	userAgent string
	m         *metrics
}

func newUpstream(cdn, api string, timeout time.Duration, version string, rt http.RoundTripper, m *metrics) *upstream {
	if rt == nil {
		rt = &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			ForceAttemptHTTP2:     true,
			MaxIdleConns:          100,
			MaxIdleConnsPerHost:   32,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   5 * time.Second,
			ResponseHeaderTimeout: timeout,
			// Go adds Accept-Encoding: gzip and decompresses transparently.
		}
	}
	if version == "" {
		version = "dev"
	}
	return &upstream{
		client: &http.Client{
			Transport: rt,
			// STATSIG-API-KEY is a custom header, which Go would forward on a redirect to another
			// host: refuse such redirects so a key never leaves for a host we were not told about.
			CheckRedirect: func(req *http.Request, via []*http.Request) error {
				if len(via) >= 5 {
					return errors.New("too many redirects")
				}
				if req.URL.Host != via[0].URL.Host {
					return fmt.Errorf("redirect to another host (%s) refused", req.URL.Host)
				}
				return nil
			},
		},
		cdn:       strings.TrimSuffix(cdn, "/"),
		api:       strings.TrimSuffix(api, "/"),
		timeout:   timeout,
		userAgent: "sigedge/" + version,
		m:         m,
	}
}

// dcsURL is the rule-set URL of key in format f.
func (u *upstream) dcsURL(key string, f Format, sinceTime int64) string {
	s := u.cdn + "/" + f.String() + "/download_config_specs/" + url.PathEscape(key) + ".json"
	if sinceTime > 0 {
		s += "?sinceTime=" + strconv.FormatInt(sinceTime, 10)
	}
	return s
}

// fetchDCS downloads key's rule set in format f. sinceTime > 0 lets Statsig answer
// {"has_updates":false}. The body is returned as is (decompressed).
func (u *upstream) fetchDCS(ctx context.Context, key string, f Format, sinceTime int64, ci ClientInfo) ([]byte, error) {
	req, err := u.newRequest(ctx, http.MethodGet, u.dcsURL(key, f, sinceTime), nil, key, ci)
	if err != nil {
		return nil, err
	}
	return u.do(req, "dcs_"+f.String(), key)
}

// fetchIDListManifest asks Statsig for key's ID lists (POST /v1/get_id_lists, body {}).
func (u *upstream) fetchIDListManifest(ctx context.Context, key string) ([]byte, error) {
	req, err := u.newRequest(ctx, http.MethodPost, u.api+"/v1/get_id_lists", []byte("{}"), key, ClientInfo{})
	if err != nil {
		return nil, err
	}
	return u.do(req, "get_id_lists", key)
}

// fetchIDListFile downloads an ID-list file from byte start on. The URL comes from Statsig's
// manifest; like the legacy SDKs, no key is sent to it. It reports whether the server honoured the
// range (206) or sent the whole file (200).
func (u *upstream) fetchIDListFile(ctx context.Context, rawURL string, start int64) (body []byte, partial bool, err error) {
	p, err := url.Parse(rawURL)
	if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
		return nil, false, fmt.Errorf("id list file: manifest URL is not http(s)")
	}
	ctx, cancel := context.WithTimeout(ctx, u.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, false, fmt.Errorf("id list file: %w", err)
	}
	req.Header.Set("Range", "bytes="+strconv.FormatInt(start, 10)+"-")
	req.Header.Set("User-Agent", u.userAgent)
	// Ask for identity: a compressed body would lose the byte offsets Range works in.
	req.Header.Set("Accept-Encoding", "identity")
	began := time.Now()
	res, err := u.client.Do(req)
	if err != nil {
		u.observe("id_list_file", outcomeOf(err), began)
		return nil, false, fmt.Errorf("id list file %s: %s", p.Host, transportReason(err))
	}
	defer res.Body.Close()
	switch res.StatusCode {
	case http.StatusOK, http.StatusPartialContent:
	case http.StatusRequestedRangeNotSatisfiable:
		u.observe("id_list_file", "ok", began)
		return nil, true, nil
	default:
		_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10))
		u.observe("id_list_file", "status_"+statusClass(res.StatusCode), began)
		return nil, false, &StatusError{Op: "id list file", Status: res.StatusCode}
	}
	body, err = readLimited(res.Body)
	if err != nil {
		u.observe("id_list_file", "network_error", began)
		return nil, false, fmt.Errorf("id list file %s: %s", p.Host, transportReason(err))
	}
	u.observe("id_list_file", "ok", began)
	return body, res.StatusCode == http.StatusPartialContent, nil
}

func (u *upstream) newRequest(ctx context.Context, method, rawURL string, body []byte, key string, ci ClientInfo) (*http.Request, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, rawURL, rd)
	if err != nil {
		return nil, fmt.Errorf("build request: %s", scrub(err.Error(), key))
	}
	req.Header.Set(wire.HeaderAPIKey, key)
	req.Header.Set("User-Agent", u.userAgent)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	// Statsig attributes traffic by SDK type: say which SDK asked first, and that a proxy polls for it.
	sdkType, sdkVersion := ci.SDKType, ci.SDKVersion
	if sdkType == "" {
		sdkType, sdkVersion = "sigedge", strings.TrimPrefix(u.userAgent, "sigedge/")
	}
	req.Header.Set(wire.HeaderSDKType, sdkType)
	if sdkVersion != "" {
		req.Header.Set(wire.HeaderSDKVersion, sdkVersion)
	}
	req.Header.Set(wire.HeaderClientTime, strconv.FormatInt(time.Now().UnixMilli(), 10))
	return req, nil
}

// do runs req with the upstream time-out and reads the body. Errors never contain the key (it is
// in the URL path): transport errors are reduced to their cause.
func (u *upstream) do(req *http.Request, endpoint, key string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(req.Context(), u.timeout)
	defer cancel()
	req = req.WithContext(ctx)
	began := time.Now()
	res, err := u.client.Do(req)
	if err != nil {
		u.observe(endpoint, outcomeOf(err), began)
		return nil, fmt.Errorf("%s: %s", endpoint, scrub(transportReason(err), key))
	}
	defer res.Body.Close()
	if res.StatusCode < 200 || res.StatusCode > 299 {
		_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10))
		outcome := "status_" + statusClass(res.StatusCode)
		if res.StatusCode == http.StatusUnauthorized || res.StatusCode == http.StatusForbidden {
			outcome = "refused"
		}
		u.observe(endpoint, outcome, began)
		return nil, &StatusError{Op: endpoint, Status: res.StatusCode}
	}
	body, err := readLimited(res.Body)
	if err != nil {
		u.observe(endpoint, outcomeOf(err), began)
		return nil, fmt.Errorf("%s: reading body: %s", endpoint, scrub(transportReason(err), key))
	}
	u.observe(endpoint, "ok", began)
	return body, nil
}

func (u *upstream) observe(endpoint, outcome string, began time.Time) {
	if u.m == nil {
		return
	}
	u.m.upstreamRequests.WithLabelValues(endpoint, outcome).Inc()
	u.m.upstreamSeconds.WithLabelValues(endpoint, outcome).Observe(time.Since(began).Seconds())
}

func readLimited(r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxUpstreamBody+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxUpstreamBody {
		return nil, fmt.Errorf("response larger than %d bytes", maxUpstreamBody)
	}
	return b, nil
}

func statusClass(code int) string {
	switch {
	case code == http.StatusTooManyRequests:
		return "429"
	case code >= 500:
		return "5xx"
	case code >= 400:
		return "4xx"
	}
	return "other"
}

func outcomeOf(err error) string {
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return "timeout"
	}
	if errors.Is(err, context.Canceled) {
		return "canceled"
	}
	return "network_error"
}

// transportReason is the cause of a transport error without the URL (which holds the key).
func transportReason(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return err.Error()
}

// scrub replaces any occurrence of the secret key by its hash: a last guard for error texts.
func scrub(s, key string) string {
	if key == "" {
		return s
	}
	return strings.ReplaceAll(s, key, "<key "+wire.KeyHash(key)+">")
}
