package main

// usageTemplate is kingpin's default help with two changes: serve is the
// default command, so the usage line shows the command as optional; and a
// command's help (inspect --help) lists that command's own flags before the
// global ones.
const usageTemplate = `{{define "FormatCommand" -}}
{{if .FlagSummary}} {{.FlagSummary}}{{end -}}
{{range .Args}}{{if not .Hidden}} {{if not .Required}}[{{end}}{{if .PlaceHolder}}{{.PlaceHolder}}{{else}}<{{.Name}}>{{end}}{{if .Value|IsCumulative}}...{{end}}{{if not .Required}}]{{end}}{{end}}{{end -}}
{{end -}}

{{define "FormatCommands" -}}
{{range .FlattenedCommands -}}
{{if not .Hidden -}}
  {{.FullCommand}}{{if .Default}} (default){{end}}{{template "FormatCommand" .}}
{{.Help|Wrap 4}}
{{end -}}
{{end -}}
{{end -}}

{{if .Context.SelectedCommand -}}
usage: {{.App.Name}} {{.Context.SelectedCommand}} [<flags>]
{{if .Context.SelectedCommand.Help}}
{{.Context.SelectedCommand.Help|Wrap 0}}
{{end}}

{{- if .Context.SelectedCommand.Flags -}}
Flags of {{.Context.SelectedCommand}}:
{{.Context.SelectedCommand.Flags|FlagsToTwoColumns|FormatTwoColumns}}
{{end -}}
Global flags:
{{.App.Flags|FlagsToTwoColumns|FormatTwoColumns}}
{{- else -}}
usage: {{.App.Name}} [<flags>]{{if .App.Commands}} [<command> [<flags>]]{{end}}
{{if .App.Help}}
{{.App.Help|Wrap 0}}
{{end}}

{{- "" -}}
Flags:
{{.App.Flags|FlagsToTwoColumns|FormatTwoColumns}}
{{if .App.Commands -}}
Commands:
{{template "FormatCommands" .App}}
{{end -}}
{{end -}}
`
