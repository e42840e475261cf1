package server

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/alize-eple/alize/controller/api"
	"github.com/alize-eple/alize/controller/internal/fleet"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are the controller's Prometheus metrics, in a registry of its
// own.
type Metrics struct {
	Registry     *prometheus.Registry
	handler      http.Handler
	requests     *prometheus.CounterVec
	durations    *prometheus.HistogramVec
	answers      prometheus.Histogram
	reports      *prometheus.CounterVec
	certificates *prometheus.CounterVec
}

// NewMetrics makes the metrics, registered in reg (a new registry when
// nil) with the Go and process collectors.
func NewMetrics(reg *prometheus.Registry) *Metrics {
	if reg == nil {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	m := &Metrics{
		Registry: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "alize_http_requests_total", Help: "HTTP requests answered, by route and status code.",
		}, []string{"route", "code"}),
		durations: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "alize_http_request_duration_seconds", Help: "Time to answer HTTP requests, by route (long polls included).",
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10, 60, 300},
		}, []string{"route"}),
		answers: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "alize_manifest_answer_seconds", Help: "Time to answer agents' manifest requests, the time a long poll was held left out: the controller's own latency.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .25, 1},
		}),
		reports: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "alize_reports_total", Help: "Agent reports stored (duplicates left out), by outcome.",
		}, []string{"outcome"}),
		certificates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "alize_certificates_issued_total", Help: "Client certificates issued, by how: enroll, renew, renew_expired.",
		}, []string{"how"}),
	}
	reg.MustRegister(m.requests, m.durations, m.answers, m.reports, m.certificates)
	m.handler = promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
	return m
}

func (m *Metrics) request(route string, status int, took time.Duration) {
	m.requests.WithLabelValues(route, strconv.Itoa(status)).Inc()
	m.durations.WithLabelValues(route).Observe(took.Seconds())
}

// indicatorCollector exports the fleet indicators, computed at most
// every ttl.
type indicatorCollector struct {
	compute func(ctx context.Context) (api.Indicators, error)
	ttl     time.Duration

	mu     sync.Mutex
	cached api.Indicators
	at     time.Time

	servers, compliance, median *prometheus.Desc
}

func newIndicatorCollector(compute func(context.Context) (api.Indicators, error), ttl time.Duration) *indicatorCollector {
	labels := []string{"by", "key"}
	return &indicatorCollector{
		compute: compute, ttl: ttl,
		servers:    prometheus.NewDesc("alize_servers", "Servers by state, per fleet, academy, establishment type and module version.", []string{"by", "key", "state"}, nil),
		compliance: prometheus.NewDesc("alize_compliance_ratio", "Servers compliant or corrected, over all servers.", labels, nil),
		median:     prometheus.NewDesc("alize_push_to_applied_median_seconds", "Median time from a manifest's signature to the report applying it.", labels, nil),
	}
}

func (c *indicatorCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.servers
	ch <- c.compliance
	ch <- c.median
}

func (c *indicatorCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	if time.Since(c.at) > c.ttl {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		ind, err := c.compute(ctx)
		cancel()
		if err == nil {
			c.cached, c.at = ind, time.Now()
		}
	}
	ind := c.cached
	c.mu.Unlock()
	for _, r := range ind.Rows {
		for state, n := range map[string]int{
			api.StateCompliant: r.Compliant, api.StateCorrected: r.Corrected, api.StateFailing: r.Failing,
			api.StatePending: r.Pending, api.StateRefused: r.Refused, api.StateNotReporting: r.NotReporting,
		} {
			ch <- prometheus.MustNewConstMetric(c.servers, prometheus.GaugeValue, float64(n), r.By, r.Key, state)
		}
		ch <- prometheus.MustNewConstMetric(c.compliance, prometheus.GaugeValue, r.CompliancePercent/100, r.By, r.Key)
		ch <- prometheus.MustNewConstMetric(c.median, prometheus.GaugeValue, r.MedianPushToAppliedSeconds, r.By, r.Key)
	}
}

func indicatorsOf(rows []fleet.Row, now time.Time) api.Indicators { return fleet.Indicators(rows, now) }
