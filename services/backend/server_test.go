package main

import (
	"context"
	"encoding/json"
	"io"
	"log"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func quietServer(rate float64, seed int64) *server {
	return newServer("1.2.3-test", rate, seed, log.New(io.Discard, "", 0))
}

// countFailures sends n GET /api/items straight to the handler.
func countFailures(t *testing.T, h http.Handler, n int) int {
	t.Helper()
	failures := 0
	for i := 0; i < n; i++ {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/items", nil))
		switch rec.Code {
		case http.StatusOK:
		case http.StatusInternalServerError:
			failures++
		default:
			t.Fatalf("request %d: unexpected status %d", i, rec.Code)
		}
	}
	return failures
}

// The observed failure share stays within 5 standard deviations of the rate
// (a false alarm has probability below 1e-6), for a random seed.
func TestFailureRateNearConfigured(t *testing.T) {
	for _, rate := range []float64{0.02, 0.3} {
		seed := time.Now().UnixNano()
		const n = 5000
		got := countFailures(t, quietServer(rate, seed).handler(), n)
		mean := rate * n
		sd := math.Sqrt(n * rate * (1 - rate))
		if math.Abs(float64(got)-mean) > 5*sd {
			t.Errorf("rate %g seed %d: %d failures in %d requests, want %.0f ± %.0f", rate, seed, got, n, mean, 5*sd)
		}
	}
}

func TestZeroFailureRateDisablesFailures(t *testing.T) {
	if got := countFailures(t, quietServer(0, time.Now().UnixNano()).handler(), 3000); got != 0 {
		t.Fatalf("FAILURE_RATE=0 still failed %d requests", got)
	}
}

func TestHealthNeverFailsEvenAtFullFailureRate(t *testing.T) {
	ts := httptest.NewServer(quietServer(1, 1).handler())
	defer ts.Close()
	for i := 0; i < 200; i++ {
		resp, err := http.Get(ts.URL + "/")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(body)) != `{"status":"ok"}` {
			t.Fatalf("GET / = %d %q", resp.StatusCode, body)
		}
	}
	// ...while every API request fails.
	resp, err := http.Get(ts.URL + "/api/items")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusInternalServerError {
		t.Fatalf("GET /api/items at FAILURE_RATE=1 = %d, want 500", resp.StatusCode)
	}
}

func TestItemsEndpoints(t *testing.T) {
	ts := httptest.NewServer(quietServer(0, 1).handler())
	defer ts.Close()

	resp, err := http.Get(ts.URL + "/api/items")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /api/items = %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var items []item
	if err := json.NewDecoder(resp.Body).Decode(&items); err != nil {
		t.Fatalf("decode items: %v", err)
	}
	if len(items) != len(catalogue()) || items[0].Name == "" || items[0].PriceCents <= 0 {
		t.Fatalf("unexpected items: %+v", items)
	}

	cases := map[string]int{
		"/api/items/3":   http.StatusOK,
		"/api/items/999": http.StatusNotFound,
		"/api/items/x":   http.StatusNotFound,
		"/api/other":     http.StatusNotFound,
		"/nope":          http.StatusNotFound,
	}
	for path, want := range cases {
		resp, err := http.Get(ts.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s = %d, want %d", path, resp.StatusCode, want)
		}
	}
	resp2, err := http.Post(ts.URL+"/api/items", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp2.Body.Close()
	if resp2.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /api/items = %d, want 405", resp2.StatusCode)
	}
}

func TestVersionEndpoint(t *testing.T) {
	ts := httptest.NewServer(quietServer(0, 1).handler())
	defer ts.Close()
	resp, err := http.Get(ts.URL + "/version")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v map[string]string
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		t.Fatal(err)
	}
	if v["version"] != "1.2.3-test" || v["service"] != "backend" {
		t.Fatalf("version body = %v", v)
	}
}

func TestRequestLogLine(t *testing.T) {
	var buf strings.Builder
	h := newServer("dev", 0, 1, log.New(&buf, "", 0)).handler()
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/api/items/2", nil))
	line := buf.String()
	if !strings.HasPrefix(line, "GET /api/items/2 200 ") || strings.Count(line, "\n") != 1 {
		t.Fatalf("log line = %q", line)
	}
}

func TestLoadConfig(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	cfg, err := loadConfig(env(nil))
	if err != nil || cfg.listenAddr != ":8080" || cfg.failureRate != 0.02 {
		t.Fatalf("defaults = %+v, %v", cfg, err)
	}
	cfg, err = loadConfig(env(map[string]string{"FAILURE_RATE": "0", "LISTEN_ADDR": "127.0.0.1:9000", "LATENCY": "50ms"}))
	if err != nil || cfg.failureRate != 0 || cfg.listenAddr != "127.0.0.1:9000" || cfg.latency != 50*time.Millisecond {
		t.Fatalf("explicit = %+v, %v", cfg, err)
	}
	for _, bad := range []map[string]string{
		{"FAILURE_RATE": "abc"},
		{"FAILURE_RATE": "-0.1"},
		{"FAILURE_RATE": "1.5"},
		{"FAILURE_RATE": "NaN"},
		{"LISTEN_ADDR": "8080"},
		{"SHUTDOWN_TIMEOUT": "5"},
		{"LATENCY": "abc"},
		{"LATENCY": "50"},
		{"LATENCY": "-1ms"},
		{"LATENCY": "2m"},
	} {
		if _, err := loadConfig(env(bad)); err == nil {
			t.Errorf("loadConfig(%v) accepted an invalid value", bad)
		} else {
			for k := range bad {
				if !strings.Contains(err.Error(), k) {
					t.Errorf("error %q does not name %s", err, k)
				}
			}
		}
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

// LATENCY delays every answer, the health check and injected failures included.
func TestLatencyDelaysEveryAnswer(t *testing.T) {
	const latency = 30 * time.Millisecond
	s := quietServer(1, 1)
	s.latency = latency
	h := s.handler()
	for path, want := range map[string]int{"/": 200, "/version": 200, "/api/items": 500, "/nope": 404} {
		start := time.Now()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if took := time.Since(start); took < latency {
			t.Errorf("GET %s took %s, want at least %s", path, took, latency)
		}
		if rec.Code != want {
			t.Errorf("GET %s = %d, want %d", path, rec.Code, want)
		}
	}
	// Without LATENCY nothing waits.
	start := time.Now()
	quietServer(0, 1).handler().ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil))
	if took := time.Since(start); took >= latency {
		t.Errorf("GET / without LATENCY took %s", took)
	}
}

// A client that leaves during the delay gets nothing and does not hold the handler.
func TestLatencyGivesUpWhenTheClientLeaves(t *testing.T) {
	s := quietServer(0, 1)
	s.latency = time.Minute
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rec := httptest.NewRecorder()
	start := time.Now()
	s.handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/items", nil).WithContext(ctx))
	if took := time.Since(start); took > time.Second {
		t.Fatalf("handler waited %s for a client that had left", took)
	}
	if rec.Code != 499 || rec.Body.Len() != 0 {
		t.Fatalf("answer = %d %q, want 499 without a body", rec.Code, rec.Body.String())
	}
}
