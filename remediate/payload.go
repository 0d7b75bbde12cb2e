package remediate

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// errMalformed is wrapped by every decoding error: the reply is 400.
var errMalformed = errors.New("malformed webhook payload")

// message is the part of Alertmanager's webhook payload (version 4) the
// receiver reads. Everything else (groupLabels, routeLabels,
// truncatedAlerts, annotations, ...) is skipped by the decoder, so fields
// added by newer Alertmanagers are accepted without being trusted.
type message struct {
	Version string   `json:"version"`
	Alerts  *[]alert `json:"alerts"`
}

type alert struct {
	Status      string            `json:"status"`
	Labels      map[string]string `json:"labels"`
	StartsAt    time.Time         `json:"startsAt"`
	Fingerprint string            `json:"fingerprint"`
}

// decodeMessage parses and checks a webhook body. The size is bounded by the
// caller; encoding/json bounds nesting depth (10000), so a deeply nested body
// is an error, not a stack overflow.
func decodeMessage(data []byte) ([]alert, error) {
	var m message
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("%w: %w", errMalformed, err)
	}
	if m.Version != "4" {
		return nil, fmt.Errorf("%w: version %q, want \"4\"", errMalformed, clip(m.Version))
	}
	if m.Alerts == nil {
		return nil, fmt.Errorf("%w: no alerts field", errMalformed)
	}
	alerts := *m.Alerts
	for i := range alerts {
		a := &alerts[i]
		if a.Status != "firing" && a.Status != "resolved" {
			return nil, fmt.Errorf("%w: alert %d: status %q, want firing or resolved", errMalformed, i, clip(a.Status))
		}
		if a.Labels == nil {
			return nil, fmt.Errorf("%w: alert %d has no labels", errMalformed, i)
		}
	}
	return alerts, nil
}

// maxEcho bounds label values echoed into replies, logs and Recent, so a
// hostile label cannot blow up a log line.
const maxEcho = 128

// clip shortens s to maxEcho bytes for echoing; JSON and logfmt escape the
// control characters it may hold.
func clip(s string) string {
	if len(s) <= maxEcho {
		return s
	}
	return s[:maxEcho] + "..."
}
