package selfmetrics

import (
	"fmt"

	"github.com/memfrag/memfrag_exporter/internal/processcollector"
)

// procReader fills in the process_* families from processcollector.
type procReader struct {
	c      *processcollector.Collector
	fields []procField
}

type procField struct {
	slot, family int
	get          func(v *processcollector.Values) (float64, bool)
}

var procValues = map[string]func(v *processcollector.Values) (float64, bool){
	"process_cpu_seconds_total":            func(v *processcollector.Values) (float64, bool) { return v.CPUSeconds, v.Has.Stat },
	"process_virtual_memory_bytes":         func(v *processcollector.Values) (float64, bool) { return v.VirtualBytes, v.Has.Stat },
	"process_resident_memory_bytes":        func(v *processcollector.Values) (float64, bool) { return v.ResidentBytes, v.Has.Stat },
	"process_start_time_seconds":           func(v *processcollector.Values) (float64, bool) { return v.StartTime, v.Has.StartTime },
	"process_open_fds":                     func(v *processcollector.Values) (float64, bool) { return v.OpenFDs, v.Has.OpenFDs },
	"process_max_fds":                      func(v *processcollector.Values) (float64, bool) { return v.MaxFDs, v.Has.MaxFDs },
	"process_virtual_memory_max_bytes":     func(v *processcollector.Values) (float64, bool) { return v.MaxVirtualBytes, v.Has.MaxVirtualBytes },
	"process_network_receive_bytes_total":  func(v *processcollector.Values) (float64, bool) { return v.ReceiveBytes, v.Has.Network },
	"process_network_transmit_bytes_total": func(v *processcollector.Values) (float64, bool) { return v.TransmitBytes, v.Has.Network },
}

func procSource(c *processcollector.Collector) source {
	return source{collector: c.Template(), newReader: func(l layout) (reader, error) {
		r := &procReader{c: c}
		for name, slot := range l.slot {
			get, ok := procValues[name]
			if !ok {
				return nil, fmt.Errorf("the process collector exports %s, which has no value here", name)
			}
			r.fields = append(r.fields, procField{slot, l.family[name], get})
		}
		return r, nil
	}}
}

func (r *procReader) read(vals []float64, ok []bool) {
	v := r.c.Read()
	for _, f := range r.fields {
		vals[f.slot], ok[f.family] = f.get(&v)
	}
}
