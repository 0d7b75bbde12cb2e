package fleet

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	held   prometheus.Gauge
	wait   prometheus.Histogram
	errors *prometheus.CounterVec
	max    prometheus.Gauge
}

func newMetrics(n int) *metrics {
	m := &metrics{
		held: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "memfrag", Name: "remediation_fleet_slot_held",
			Help: "1 while this node holds one of the fleet's remediation slots (a Lease), i.e. while its action runs under the fleet budget.",
		}),
		wait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "memfrag", Name: "remediation_fleet_wait_seconds",
			Help:    "Time an accepted alert waited for a fleet slot, whether it got one or not (--remediate.fleet.wait bounds it).",
			Buckets: []float64{0.1, 1, 5, 15, 30, 60, 120, 300, 600},
		}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "memfrag", Name: "remediation_fleet_errors_total",
			Help: "Failed requests to the API server for the fleet's Leases, by kind (unreachable, unauthorized, forbidden, server_error, rejected, invalid_response, token), and held slots lost mid-action (lost).",
		}, []string{"kind"}),
		max: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "memfrag", Name: "remediation_fleet_max_concurrent",
			Help: "The fleet budget: at most this many nodes run a remediation action at once (--remediate.fleet.max-concurrent).",
		}),
	}
	m.max.Set(float64(n))
	for _, k := range ErrorKinds {
		m.errors.WithLabelValues(k)
	}
	return m
}

// Describe implements prometheus.Collector.
func (b *Budget) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range b.collectors() {
		c.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (b *Budget) Collect(ch chan<- prometheus.Metric) {
	for _, c := range b.collectors() {
		c.Collect(ch)
	}
}

func (b *Budget) collectors() []prometheus.Collector {
	return []prometheus.Collector{b.metrics.held, b.metrics.wait, b.metrics.errors, b.metrics.max}
}

// SlotStatus is one slot as the landing page shows it.
type SlotStatus struct {
	Name      string
	Holder    string    // "" when free
	RenewTime time.Time // zero when never renewed
	Expired   bool      // held, but renewTime + duration is past
	Err       string    // the slot could not be read
}

// Status reads every slot, for the landing page. The answer is kept for a
// few seconds so that page views cannot turn into a load on the API server.
func (b *Budget) Status() []SlotStatus {
	return b.status.get(func() []SlotStatus {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		out := make([]SlotStatus, b.cfg.MaxConcurrent)
		now := time.Now()
		for i := range out {
			out[i].Name = slotName(b.cfg.LeasePrefix, i)
			l, err := b.client.Get(ctx, out[i].Name)
			switch {
			case IsNotFound(err):
			case err != nil:
				out[i].Err = err.Error()
			default:
				out[i].Holder, out[i].RenewTime = l.Spec.Holder(), renewOf(l)
				d := b.cfg.LeaseDuration
				if l.Spec.LeaseDurationSeconds != nil {
					d = time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second
				}
				out[i].Expired = out[i].Holder != "" && !now.Before(out[i].RenewTime.Add(d))
			}
		}
		return out
	})
}

// statusCache holds the last Status for statusTTL.
type statusCache struct {
	mu   sync.Mutex
	at   time.Time
	last []SlotStatus
}

const statusTTL = 5 * time.Second

func (c *statusCache) get(read func() []SlotStatus) []SlotStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.last == nil || time.Since(c.at) >= statusTTL {
		c.last, c.at = read(), time.Now()
	}
	return append([]SlotStatus(nil), c.last...)
}
