package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const itemsJSON = `[
 {"id":1,"sku":"KB-104","name":"Mechanical keyboard","category":"peripherals","price_cents":8900,"currency":"EUR","in_stock":42,"tags":["usb"]},
 {"id":2,"sku":"XSS-1","name":"<script>alert(1)</script>","category":"test","price_cents":5,"currency":"EUR","in_stock":0,"tags":[]}
]`

func testConfig(backendURL string) config {
	cfg := defaultConfig()
	cfg.backendURL = backendURL
	cfg.pageWork = 10 * time.Millisecond
	cfg.queueTimeout = time.Second
	cfg.backendTimeout = 200 * time.Millisecond
	cfg.startupWait = 0
	cfg.checkInterval = 0
	return cfg
}

// testFrontend starts the frontend handler; fatal reasons arrive on the channel.
func testFrontend(t *testing.T, cfg config) (*server, *httptest.Server, chan string) {
	t.Helper()
	fatals := make(chan string, 10)
	s := newServer(cfg, "9.9.9-test", log.New(io.Discard, "", 0), func(reason string) { fatals <- reason })
	ts := httptest.NewServer(s.handler())
	t.Cleanup(ts.Close)
	return s, ts, fatals
}

// fakeBackend serves items on /api/items and 200 on /, recording the
// highest number of concurrent /api/items requests.
type fakeBackend struct {
	calls, inFlight, maxInFlight int32
	fail                         func(call int32) int // status to answer instead of 200, or 0
}

func (f *fakeBackend) start(t *testing.T) *httptest.Server {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/" {
			fmt.Fprintln(w, `{"status":"ok"}`)
			return
		}
		call := atomic.AddInt32(&f.calls, 1)
		n := atomic.AddInt32(&f.inFlight, 1)
		defer atomic.AddInt32(&f.inFlight, -1)
		for {
			m := atomic.LoadInt32(&f.maxInFlight)
			if n <= m || atomic.CompareAndSwapInt32(&f.maxInFlight, m, n) {
				break
			}
		}
		if f.fail != nil {
			if status := f.fail(call); status != 0 {
				w.WriteHeader(status)
				return
			}
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, itemsJSON)
	}))
	t.Cleanup(ts.Close)
	return ts
}

func get(t *testing.T, u string) (int, http.Header, string) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(body)
}

func closedURL(t *testing.T) string {
	ts := httptest.NewServer(http.NotFoundHandler())
	u := ts.URL
	ts.Close()
	return u
}

func TestPageRendersBackendItems(t *testing.T) {
	fb := &fakeBackend{}
	_, ts, fatals := testFrontend(t, testConfig(fb.start(t).URL))
	status, h, body := get(t, ts.URL+"/")
	if status != http.StatusOK || !strings.HasPrefix(h.Get("Content-Type"), "text/html") {
		t.Fatalf("GET / = %d %s: %s", status, h.Get("Content-Type"), body)
	}
	for _, want := range []string{"Mechanical keyboard", "89.00 EUR", "0.05 EUR", "out of stock",
		"&lt;script&gt;", `href="/static/style.css"`, "frontend 9.9.9-test"} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(body, "<script>") {
		t.Error("page contains an unescaped backend string")
	}
	if status, _, _ := get(t, ts.URL+"/nope"); status != http.StatusNotFound {
		t.Errorf("GET /nope = %d, want 404", status)
	}
	if len(fatals) != 0 {
		t.Errorf("fatal called: %s", <-fatals)
	}
}

func TestStaticAssetsBypassWorkers(t *testing.T) {
	s, ts, _ := testFrontend(t, testConfig(closedURL(t)))
	want, err := assets.ReadFile("static/style.css")
	if err != nil {
		t.Fatal(err)
	}
	s.workers <- struct{}{} // occupy the only page worker
	defer func() { <-s.workers }()
	status, h, body := get(t, ts.URL+"/static/style.css")
	if status != http.StatusOK || !strings.HasPrefix(h.Get("Content-Type"), "text/css") || body != string(want) {
		t.Fatalf("GET /static/style.css = %d %q, %d bytes", status, h.Get("Content-Type"), len(body))
	}
	for _, p := range []string{"/static/", "/static/missing.css"} {
		if status, _, _ := get(t, ts.URL+p); status != http.StatusNotFound {
			t.Errorf("GET %s = %d, want 404", p, status)
		}
	}
}

func TestBackend5xxIsRetriedThen502(t *testing.T) {
	fb := &fakeBackend{fail: func(int32) int { return http.StatusInternalServerError }}
	_, ts, fatals := testFrontend(t, testConfig(fb.start(t).URL))
	for i := 0; i < 4; i++ {
		if status, _, body := get(t, ts.URL+"/"); status != http.StatusBadGateway || !strings.Contains(body, "HTTP 500") {
			t.Fatalf("GET / with failing backend = %d %q, want 502", status, body)
		}
	}
	if got := atomic.LoadInt32(&fb.calls); got != 12 {
		t.Errorf("backend saw %d calls for 4 pages, want 12 (1 + 2 retries each)", got)
	}
	if len(fatals) != 0 {
		t.Errorf("a backend answering 5xx is reachable, but fatal was called: %s", <-fatals)
	}

	flaky := &fakeBackend{fail: func(call int32) int {
		if call == 1 {
			return http.StatusInternalServerError
		}
		return 0
	}}
	_, ts2, _ := testFrontend(t, testConfig(flaky.start(t).URL))
	if status, _, _ := get(t, ts2.URL+"/"); status != http.StatusOK {
		t.Fatalf("one 500 then success: GET / = %d, want 200 after a retry", status)
	}
}

func TestUnreachableBackendIsFatalAfterMaxFailures(t *testing.T) {
	_, ts, fatals := testFrontend(t, testConfig(closedURL(t)))
	for i := 1; i <= 3; i++ {
		if status, _, _ := get(t, ts.URL+"/"); status != http.StatusBadGateway {
			t.Fatalf("request %d: status %d, want 502", i, status)
		}
		if i < 3 && len(fatals) != 0 {
			t.Fatalf("fatal after %d unreachable results, want 3", i)
		}
	}
	select {
	case reason := <-fatals:
		if !strings.Contains(reason, "connection refused") || !strings.Contains(reason, "3 consecutive") {
			t.Errorf("fatal reason = %q", reason)
		}
	default:
		t.Fatal("3 consecutive unreachable results did not trigger the exit")
	}
}

func TestWatchdogNoticesBackendWithoutTraffic(t *testing.T) {
	s, _, fatals := testFrontend(t, testConfig(closedURL(t)))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.watchBackend(ctx, 20*time.Millisecond)
	select {
	case <-fatals:
	case <-time.After(3 * time.Second):
		t.Fatal("watchdog did not flag the unreachable backend")
	}
}

func TestTrackerDecision(t *testing.T) {
	U := fetchResult{outcome: outcomeUnreachable}
	E := fetchResult{outcome: outcomeHTTPError, status: 500}
	OK := fetchResult{outcome: outcomeOK, status: 200}
	tr := &failureTracker{max: 3}
	for i, r := range []fetchResult{U, U, E, U, U, OK, U, U} {
		if exit, _ := tr.observe(r); exit {
			t.Fatalf("step %d: exit before 3 consecutive unreachable results", i)
		}
	}
	if exit, n := tr.observe(U); !exit || n != 3 {
		t.Fatalf("third consecutive unreachable: exit=%v n=%d, want true 3", exit, n)
	}
}

func TestTimeoutCountsAsUnreachable(t *testing.T) {
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(2 * time.Second):
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	c := newBackendClient(slow.URL, 50*time.Millisecond, 1)
	res := c.get("/api/items")
	if res.outcome != outcomeUnreachable || res.attempts != 2 || !strings.Contains(res.reason(), "timed out") {
		t.Fatalf("slow backend: outcome %d attempts %d reason %q", res.outcome, res.attempts, res.reason())
	}
}

func TestDescribeTransportError(t *testing.T) {
	dns := &url.Error{Op: "Get", URL: "http://backend:8080/", Err: &net.OpError{Op: "dial", Err: &net.DNSError{Name: "backend", Err: "no such host", IsNotFound: true}}}
	if got := describeTransportError(dns); !strings.HasPrefix(got, `DNS lookup of "backend" failed`) {
		t.Errorf("DNS error described as %q", got)
	}
	if got := describeTransportError(fmt.Errorf("wrapped: %w", context.DeadlineExceeded)); !strings.HasPrefix(got, "timed out") {
		t.Errorf("deadline described as %q", got)
	}
	if got := describeTransportError(errors.New("EOF")); !strings.HasPrefix(got, "connection failed") {
		t.Errorf("EOF described as %q", got)
	}
}

// concurrentPages sends n GET / at once and returns their statuses and the wall time.
func concurrentPages(t *testing.T, u string, n int) ([]int, time.Duration) {
	t.Helper()
	statuses := make([]int, n)
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			resp, err := http.Get(u + "/")
			if err != nil {
				t.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			statuses[i] = resp.StatusCode
		}(i)
	}
	wg.Wait()
	return statuses, time.Since(start)
}

func TestSingleWorkerSerialisesPages(t *testing.T) {
	fb := &fakeBackend{}
	cfg := testConfig(fb.start(t).URL)
	cfg.pageWork = 50 * time.Millisecond
	_, ts, _ := testFrontend(t, cfg)
	statuses, elapsed := concurrentPages(t, ts.URL, 5)
	for i, s := range statuses {
		if s != http.StatusOK {
			t.Errorf("request %d: status %d", i, s)
		}
	}
	if elapsed < 250*time.Millisecond {
		t.Errorf("5 pages of 50 ms took %s with one worker: they ran in parallel", elapsed)
	}
	if m := atomic.LoadInt32(&fb.maxInFlight); m != 1 {
		t.Errorf("backend saw %d concurrent page fetches, want 1", m)
	}

	// The same load with 5 workers runs in parallel: the limit above is the worker count.
	fb5 := &fakeBackend{}
	cfg5 := cfg
	cfg5.backendURL = fb5.start(t).URL
	cfg5.workers = 5
	_, ts5, _ := testFrontend(t, cfg5)
	if _, elapsed5 := concurrentPages(t, ts5.URL, 5); elapsed5 >= 250*time.Millisecond {
		t.Errorf("5 pages with 5 workers took %s, expected them to overlap", elapsed5)
	}
}

func TestQueueTimeoutReturns503(t *testing.T) {
	fb := &fakeBackend{}
	cfg := testConfig(fb.start(t).URL)
	cfg.pageWork = 300 * time.Millisecond
	cfg.queueTimeout = 50 * time.Millisecond
	_, ts, _ := testFrontend(t, cfg)
	statuses, elapsed := concurrentPages(t, ts.URL, 3)
	count := map[int]int{}
	for _, s := range statuses {
		count[s]++
	}
	if count[http.StatusOK] != 1 || count[http.StatusServiceUnavailable] != 2 {
		t.Fatalf("statuses %v, want one 200 and two 503", statuses)
	}
	if elapsed > 900*time.Millisecond {
		t.Errorf("queued requests were not cut off: %s", elapsed)
	}
}

func TestVersionEndpoint(t *testing.T) {
	_, ts, _ := testFrontend(t, testConfig(closedURL(t)))
	status, _, body := get(t, ts.URL+"/version")
	var v map[string]string
	if err := json.Unmarshal([]byte(body), &v); err != nil || status != 200 {
		t.Fatalf("GET /version = %d %q (%v)", status, body, err)
	}
	if v["version"] != "9.9.9-test" || v["service"] != "frontend" {
		t.Fatalf("version body = %v", v)
	}
}

func TestWaitReady(t *testing.T) {
	var calls int32
	starting := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if atomic.AddInt32(&calls, 1) < 3 {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer starting.Close()
	if err := newBackendClient(starting.URL, time.Second, 0).waitReady(context.Background(), 5*time.Second); err != nil {
		t.Fatalf("backend answering 200 on its third call: %v", err)
	}

	start := time.Now()
	err := newBackendClient(closedURL(t), time.Second, 0).waitReady(context.Background(), 300*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("unreachable backend: err = %v", err)
	}
	if d := time.Since(start); d < 300*time.Millisecond || d > 2*time.Second {
		t.Errorf("waited %s, want about 300ms", d)
	}
}

func TestLoadConfig(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	cfg, err := loadConfig(env(nil))
	if err != nil || cfg != defaultConfig() {
		t.Fatalf("defaults = %+v, %v", cfg, err)
	}
	cfg, err = loadConfig(env(map[string]string{"BACKEND_URL": "http://127.0.0.1:18080/", "PAGE_WORK_MS": "0", "BACKEND_STARTUP_WAIT": "0"}))
	if err != nil || cfg.backendURL != "http://127.0.0.1:18080" || cfg.pageWork != 0 || cfg.startupWait != 0 {
		t.Fatalf("explicit = %+v, %v", cfg, err)
	}
	cfg, err = loadConfig(env(map[string]string{"LATENCY": "50ms"}))
	if err != nil || cfg.latency != 50*time.Millisecond {
		t.Fatalf("LATENCY=50ms gives %+v, %v", cfg, err)
	}
	for _, bad := range []map[string]string{
		{"BACKEND_URL": "backend:8080"},
		{"BACKEND_URL": "ftp://backend"},
		{"PAGE_WORK_MS": "100ms"},
		{"PAGE_WORKERS": "0"},
		{"BACKEND_MAX_FAILURES": "0"},
		{"BACKEND_RETRIES": "-1"},
		{"QUEUE_TIMEOUT": "0"},
		{"BACKEND_TIMEOUT": "1"},
		{"LISTEN_ADDR": "8080"},
		{"LATENCY": "abc"},
		{"LATENCY": "50"},
		{"LATENCY": "-1ms"},
		{"LATENCY": "2m"},
	} {
		_, err := loadConfig(env(bad))
		for k := range bad {
			if err == nil || !strings.Contains(err.Error(), k) {
				t.Errorf("loadConfig(%v) = %v, want an error naming %s", bad, err, k)
			}
		}
	}
}

func TestRequestLogLine(t *testing.T) {
	var buf strings.Builder
	s := newServer(testConfig(closedURL(t)), "dev", log.New(&buf, "", 0), func(string) {})
	s.handler().ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/version", nil))
	if line := buf.String(); !strings.HasPrefix(line, "GET /version 200 ") || strings.Count(line, "\n") != 1 {
		t.Fatalf("log line = %q", line)
	}
}

func TestHandleArgs(t *testing.T) {
	if _, done := handleArgs(nil); done {
		t.Error("no arguments must start the server")
	}
	if code, done := handleArgs([]string{"--version"}); !done || code != 0 {
		t.Errorf("--version = %d %v, want 0 true", code, done)
	}
	if code, done := handleArgs([]string{"--listen", ":9"}); !done || code != 2 {
		t.Errorf("unknown argument = %d %v, want 2 true", code, done)
	}
}

// LATENCY delays every answer: pages (the health check), static files and /version.
func TestLatencyDelaysEveryAnswer(t *testing.T) {
	const latency = 30 * time.Millisecond
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`[]`))
	}))
	defer backend.Close()
	cfg := testConfig(backend.URL)
	cfg.latency = latency
	h := newServer(cfg, "dev", log.New(io.Discard, "", 0), func(string) {}).handler()
	for _, path := range []string{"/", "/static/style.css", "/version"} {
		start := time.Now()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if took := time.Since(start); took < latency {
			t.Errorf("GET %s took %s, want at least %s", path, took, latency)
		}
		if rec.Code != http.StatusOK {
			t.Errorf("GET %s = %d, want 200", path, rec.Code)
		}
	}
	// Static files do not wait without LATENCY.
	cfg.latency = 0
	h = newServer(cfg, "dev", log.New(io.Discard, "", 0), func(string) {}).handler()
	start := time.Now()
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/static/style.css", nil))
	if took := time.Since(start); took >= latency {
		t.Errorf("GET /static/style.css without LATENCY took %s", took)
	}
}
