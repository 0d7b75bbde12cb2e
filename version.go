package main

import (
	"runtime/debug"
	"strings"

	"github.com/prometheus/common/version"
)

// fillVersion completes prometheus/common/version's variables from the
// binary's build info wherever -ldflags left them empty (go build, go run,
// go install): the module version, the VCS revision and, as build date, the
// commit time. What no source knows reads "unknown", never blank.
func fillVersion(bi *debug.BuildInfo, ok bool) {
	settings := map[string]string{}
	mainVersion := ""
	if ok {
		mainVersion = bi.Main.Version
		for _, s := range bi.Settings {
			settings[s.Key] = s.Value
		}
	}
	if version.Version == "" {
		switch mainVersion {
		case "", "(devel)":
			version.Version = "devel"
		default:
			version.Version = strings.TrimPrefix(mainVersion, "v")
		}
	}
	if version.Revision == "" {
		if rev := settings["vcs.revision"]; rev != "" {
			if settings["vcs.modified"] == "true" {
				rev += "-modified"
			}
			version.Revision = rev
		} else {
			version.Revision = "unknown"
		}
	}
	if version.BuildDate == "" {
		version.BuildDate = settings["vcs.time"]
	}
	for _, v := range []*string{&version.Branch, &version.BuildUser, &version.BuildDate} {
		if *v == "" {
			*v = "unknown"
		}
	}
}
