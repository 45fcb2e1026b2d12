package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"
)

// outcome classifies one exchange with the backend.
type outcome int

const (
	outcomeOK          outcome = iota // 2xx with a body
	outcomeHTTPError                  // the backend answered, with a non-2xx status: it is reachable
	outcomeUnreachable                // no answer: refused, DNS failure, timeout, reset
)

// fetchResult is the final result of a request to the backend, after retries.
type fetchResult struct {
	outcome  outcome
	status   int
	body     []byte
	err      error // transport error, set when outcome is outcomeUnreachable
	attempts int
	elapsed  time.Duration
}

// reason describes the result for logs and error pages.
func (r fetchResult) reason() string {
	switch r.outcome {
	case outcomeOK:
		return fmt.Sprintf("answered %d", r.status)
	case outcomeHTTPError:
		return fmt.Sprintf("answered HTTP %d after %d attempt(s)", r.status, r.attempts)
	}
	return fmt.Sprintf("%s (after %d attempt(s))", describeTransportError(r.err), r.attempts)
}

// describeTransportError names the kind of network failure in plain words.
func describeTransportError(err error) string {
	var dnsErr *net.DNSError
	var netErr net.Error
	switch {
	case err == nil:
		return "no error"
	case errors.As(err, &dnsErr):
		return fmt.Sprintf("DNS lookup of %q failed: %v", dnsErr.Name, dnsErr.Err)
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused: " + err.Error()
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		return "timed out: " + err.Error()
	}
	return "connection failed: " + err.Error()
}

// backendClient fetches from the backend with a per-attempt timeout and a
// few quick retries on transport errors and 5xx answers.
type backendClient struct {
	base    string
	hc      *http.Client
	timeout time.Duration
	retries int
	backoff time.Duration
}

func newBackendClient(base string, timeout time.Duration, retries int) *backendClient {
	tr := &http.Transport{
		Proxy:                 nil, // service-to-service traffic never goes through HTTP_PROXY
		DialContext:           (&net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       60 * time.Second,
		ResponseHeaderTimeout: timeout,
	}
	return &backendClient{base: base, hc: &http.Client{Transport: tr}, timeout: timeout, retries: retries, backoff: 50 * time.Millisecond}
}

// get fetches base+path, retrying up to c.retries times (50 ms, 100 ms, ...
// apart) on transport errors and 5xx. A 4xx is final at once.
func (c *backendClient) get(path string) fetchResult {
	start := time.Now()
	var res fetchResult
	for i := 0; i <= c.retries; i++ {
		if i > 0 {
			time.Sleep(c.backoff * time.Duration(i))
		}
		res = c.attempt(path)
		res.attempts = i + 1
		if res.outcome == outcomeOK || (res.outcome == outcomeHTTPError && res.status < 500) {
			break
		}
	}
	res.elapsed = time.Since(start)
	return res
}

// attempt makes one request, bounded by c.timeout including the body.
func (c *backendClient) attempt(path string) fetchResult {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return fetchResult{outcome: outcomeUnreachable, err: err}
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fetchResult{outcome: outcomeUnreachable, err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return fetchResult{outcome: outcomeUnreachable, err: err}
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fetchResult{outcome: outcomeHTTPError, status: resp.StatusCode}
	}
	return fetchResult{outcome: outcomeOK, status: resp.StatusCode, body: body}
}

// waitReady polls GET / (one attempt every 250 ms) until the backend answers
// 2xx or wait has passed (0: a single attempt).
func (c *backendClient) waitReady(ctx context.Context, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		res := c.attempt("/")
		res.attempts = 1
		if res.outcome == outcomeOK {
			return nil
		}
		if !time.Now().Before(deadline) {
			return errors.New(res.reason())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// failureTracker decides when the backend counts as gone: after max
// consecutive unreachable results. Any answer from the backend, even a 5xx,
// proves it reachable and resets the count.
type failureTracker struct {
	mu          sync.Mutex
	max         int
	consecutive int
}

// observe records one result and reports whether the process must exit, with
// the current count of consecutive unreachable results.
func (t *failureTracker) observe(res fetchResult) (mustExit bool, consecutive int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if res.outcome == outcomeUnreachable {
		t.consecutive++
	} else {
		t.consecutive = 0
	}
	return t.consecutive >= t.max, t.consecutive
}
