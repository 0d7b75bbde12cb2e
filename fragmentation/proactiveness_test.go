package fragmentation

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/memfrag/memfrag_exporter/internal/procfile"
)

func TestReadProactiveness(t *testing.T) {
	tests := []struct {
		name    string
		content *string // nil: no file
		want    uint64
		wantOK  bool
		wantErr string
	}{
		{"default", ptr("20\n"), 20, true, ""},
		{"off", ptr("0\n"), 0, true, ""},
		{"no trailing newline", ptr("100"), 100, true, ""},
		{"absent (old kernel)", nil, 0, false, ""},
		{"garbage", ptr("lots\n"), 0, false, "not a number"},
		{"empty", ptr(""), 0, false, "not a number"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			proc := t.TempDir()
			path := filepath.Join(proc, ProactivenessFile)
			if tt.content != nil {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(*tt.content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			f := procfile.New(path)
			defer f.Close()
			v, ok, err := ReadProactiveness(f)
			if v != tt.want || ok != tt.wantOK || (err == nil) != (tt.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("ReadProactiveness = %d, %v, %v; want %d, %v, error %q", v, ok, err, tt.want, tt.wantOK, tt.wantErr)
			}
		})
	}
}

func ptr(s string) *string { return &s }
