package report

import "testing"

func TestFormatBytes(t *testing.T) {
	for _, tt := range []struct {
		in   uint64
		want string
	}{
		{0, "0 B"},
		{1023, "1023 B"},
		{1024, "1 KiB"},
		{4096, "4 KiB"},
		{1536, "1.5 KiB"},
		{236 * 1024 * 1024, "236 MiB"},
		{1073741824 - 20000, "1 GiB"}, // 1023.98 MiB rounds up a unit
		{1110245376, "1 GiB"},
		{3 << 40, "3 TiB"},
		{1<<64 - 1, "16 EiB"},
	} {
		if got := formatBytes(tt.in); got != tt.want {
			t.Errorf("formatBytes(%d) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestThousandths(t *testing.T) {
	for in, want := range map[int64]string{0: "0.000", 996: "0.996", 1000: "1.000", -1000: "-1.000", 5: "0.005", -5: "-0.005"} {
		if got := thousandths(in); got != want {
			t.Errorf("thousandths(%d) = %q, want %q", in, got, want)
		}
	}
}

func TestShortBytes(t *testing.T) {
	for in, want := range map[uint64]string{512: "512", 4096: "4K", 2 << 20: "2M", 64 << 10: "64K", 1 << 30: "1G"} {
		if got := string(appendShortBytes(nil, in)); got != want {
			t.Errorf("shortBytes(%d) = %q, want %q", in, got, want)
		}
	}
}
