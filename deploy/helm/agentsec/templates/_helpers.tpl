{{/* Names and labels */}}

{{- define "agentsec.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "agentsec.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "agentsec.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The four services: values key -> binary/component name, port, gRPC service
name (proto package + service), whether it has a [redis] section, whether it
serves /metrics, and whether it signs (has a [signing] section).
*/}}
{{- define "agentsec.components" -}}
identity:
  name: identity-svc
  port: 7401
  grpcService: agentsec.identity.v1.IdentityService
  redis: true
  metrics: true
  signs: true
policy:
  name: policy-svc
  port: 7402
  grpcService: agentsec.policy.v1.PolicyService
  redis: true
  metrics: true
  signs: false
exchange:
  name: exchange-svc
  port: 7403
  grpcService: agentsec.exchange.v1.ExchangeService
  redis: true
  metrics: true
  signs: true
audit:
  name: audit-svc
  port: 7404
  grpcService: agentsec.audit.v1.AuditService
  redis: false
  metrics: true
  signs: true
{{- end -}}

{{/* The descriptor of one service: (dict "root" $ "key" "identity") */}}
{{- define "agentsec.component" -}}
{{- index (include "agentsec.components" .root | fromYaml) .key | toYaml -}}
{{- end -}}

{{/* Resource name of a service: <fullname>-identity-svc */}}
{{- define "agentsec.componentFullname" -}}
{{- $c := include "agentsec.component" . | fromYaml -}}
{{- printf "%s-%s" (include "agentsec.fullname" .root | trunc 50 | trimSuffix "-") $c.name -}}
{{- end -}}

{{- define "agentsec.selectorLabels" -}}
app.kubernetes.io/name: {{ include "agentsec.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "agentsec.labels" -}}
helm.sh/chart: {{ include "agentsec.chart" . }}
{{ include "agentsec.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: agentsec
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* (dict "root" $ "key" "identity") */}}
{{- define "agentsec.componentSelectorLabels" -}}
{{- $c := include "agentsec.component" . | fromYaml -}}
{{ include "agentsec.selectorLabels" .root }}
app.kubernetes.io/component: {{ $c.name }}
{{- end -}}

{{- define "agentsec.componentLabels" -}}
{{- $c := include "agentsec.component" . | fromYaml -}}
{{ include "agentsec.labels" .root }}
app.kubernetes.io/component: {{ $c.name }}
{{- end -}}

{{- define "agentsec.serviceAccountName" -}}
{{- $v := index .root.Values .key -}}
{{- if $v.serviceAccount.create -}}
{{- default (include "agentsec.componentFullname" .) $v.serviceAccount.name -}}
{{- else -}}
{{- default "default" $v.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "agentsec.image" -}}
{{- $registry := .Values.global.imageRegistry | default .Values.image.registry -}}
{{- $repo := .Values.image.repository -}}
{{- if $registry -}}{{- $repo = printf "%s/%s" (trimSuffix "/" $registry) $repo -}}{{- end -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" $repo .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{/* URLs and wiring */}}

{{- define "agentsec.scheme" -}}
{{- ternary "https" "http" (.Values.tls.enabled | default false) -}}
{{- end -}}

{{/*
Base URL of a service: its in-cluster URL when this release deploys it,
else `<service>.externalEndpoint` (possibly empty). (dict "root" $ "key" "identity")
*/}}
{{- define "agentsec.url" -}}
{{- $v := index .root.Values .key -}}
{{- if $v.enabled -}}
{{- $c := include "agentsec.component" . | fromYaml -}}
{{- printf "%s://%s.%s.svc:%v" (include "agentsec.scheme" .root) (include "agentsec.componentFullname" .) .root.Release.Namespace $c.port -}}
{{- else -}}
{{- $v.externalEndpoint | default "" | trimSuffix "/" -}}
{{- end -}}
{{- end -}}

{{- define "agentsec.identityIssuer" -}}
{{- .Values.identity.issuer | default (include "agentsec.url" (dict "root" . "key" "identity")) -}}
{{- end -}}

{{- define "agentsec.exchangeIssuer" -}}
{{- .Values.exchange.issuer | default (include "agentsec.url" (dict "root" . "key" "exchange")) -}}
{{- end -}}

{{/* identity-svc's key set, fetched by the other services in-cluster. */}}
{{- define "agentsec.identityJwksUri" -}}
{{- with include "agentsec.url" (dict "root" . "key" "identity") -}}{{ . }}/.well-known/jwks.json{{- end -}}
{{- end -}}

{{/* The audiences the services must agree on. */}}
{{- define "agentsec.adminAudience" -}}
{{- ((.Values.identity.config | default dict).tokens | default dict).admin_audience | default "agentsec" -}}
{{- end -}}
{{- define "agentsec.policyAudience" -}}
{{- ((.Values.policy.config | default dict).decisions | default dict).caller_audience | default "agentsec-policy" -}}
{{- end -}}
{{- define "agentsec.auditAudience" -}}
{{- (.Values.audit.config | default dict).audience | default "agentsec-audit" -}}
{{- end -}}

{{/* Secrets */}}

{{- define "agentsec.generatedSecretName" -}}
{{- printf "%s-generated" (include "agentsec.fullname" .) -}}
{{- end -}}

{{/*
Where a secret value comes from: (dict "root" $ "ref" <existingSecret/key map>
"generated" <key in the generated Secret>) -> YAML {name, key}, or "" when
neither an existing Secret nor generation provides it.
*/}}
{{- define "agentsec.secretSource" -}}
{{- if .ref.existingSecret -}}
name: {{ .ref.existingSecret }}
key: {{ .ref.key }}
{{- else if and .root.Values.secrets.generate .generated -}}
name: {{ include "agentsec.generatedSecretName" .root }}
key: {{ .generated }}
{{- end -}}
{{- end -}}

{{/* The database URL Secret of a service, or "" (then SQLite). */}}
{{- define "agentsec.databaseSource" -}}
{{- $v := index .root.Values .key -}}
{{- if $v.database.existingSecret -}}
name: {{ $v.database.existingSecret }}
key: {{ $v.database.key }}
{{- else if .root.Values.database.existingSecret -}}
name: {{ .root.Values.database.existingSecret }}
key: {{ .root.Values.database.key }}
{{- end -}}
{{- end -}}

{{- define "agentsec.pepperSource" -}}
{{- include "agentsec.secretSource" (dict "root" . "ref" .Values.identity.credentials "generated" "credentials-pepper") -}}
{{- end -}}
{{- define "agentsec.bootstrapAdminSource" -}}
{{- if .Values.identity.bootstrapAdmin.enabled -}}
{{- include "agentsec.secretSource" (dict "root" . "ref" .Values.identity.bootstrapAdmin "generated" "bootstrap-admin-client-secret") -}}
{{- end -}}
{{- end -}}
{{/* (dict "root" $ "client" "exchange"|"policy") */}}
{{- define "agentsec.serviceClientSource" -}}
{{- $ref := index .root.Values.serviceClients .client -}}
{{- include "agentsec.secretSource" (dict "root" .root "ref" $ref "generated" (printf "%s-svc-client-secret" .client)) -}}
{{- end -}}

{{/*
Whether a service client is wired: its service is deployed, identity-svc is
reachable, and a secret exists for it. (dict "root" $ "client" "exchange")
*/}}
{{- define "agentsec.serviceClientWired" -}}
{{- $v := index .root.Values .client -}}
{{- if and $v.enabled (include "agentsec.url" (dict "root" .root "key" "identity")) (include "agentsec.serviceClientSource" .) -}}
true
{{- end -}}
{{- end -}}

{{/* TLS */}}

{{- define "agentsec.tlsSecretName" -}}
{{- $c := include "agentsec.component" . | fromYaml -}}
{{- index .root.Values.tls.existingSecrets .key | default (printf "%s-tls" (include "agentsec.componentFullname" .)) -}}
{{- end -}}

{{- define "agentsec.tlsCaFile" -}}
{{- if .Values.tls.ca.existingSecret -}}
/etc/agentsec/tls-ca/{{ .Values.tls.ca.key }}
{{- else -}}
/etc/agentsec/tls/ca.crt
{{- end -}}
{{- end -}}

{{/* TOML: a renderer that keeps integers integers (toToml prints 600 as 600.0). */}}

{{- define "agentsec.toml.key" -}}
{{- if regexMatch "^[A-Za-z0-9_-]+$" . -}}{{ . }}{{- else -}}{{ toJson . }}{{- end -}}
{{- end -}}

{{- define "agentsec.toml.value" -}}
{{- $k := kindOf . -}}
{{- if eq $k "string" -}}
{{- toJson . -}}
{{- else if eq $k "bool" -}}
{{- ternary "true" "false" . -}}
{{- else if or (eq $k "float64") (eq $k "float32") -}}
{{- if eq (float64 (int64 .)) (float64 .) -}}{{ int64 . }}{{- else -}}{{ . }}{{- end -}}
{{- else if or (hasPrefix "int" $k) (hasPrefix "uint" $k) -}}
{{- . -}}
{{- else if eq $k "slice" -}}
[{{ range $i, $item := . }}{{ if $i }}, {{ end }}{{ include "agentsec.toml.value" $item }}{{ end }}]
{{- else -}}
{{- fail (printf "agentsec: a TOML value of kind %s cannot be rendered" $k) -}}
{{- end -}}
{{- end -}}

{{/* (dict "path" "<dotted path>" "map" <map>) */}}
{{- define "agentsec.toml.table" -}}
{{- $path := .path -}}
{{- $map := .map -}}
{{- range $k := keys $map | sortAlpha -}}
{{- $v := index $map $k -}}
{{- $kind := kindOf $v -}}
{{- $tables := and (eq $kind "slice") (gt (len $v) 0) (eq (kindOf (first $v)) "map") -}}
{{- if and (ne $kind "map") (ne $kind "invalid") (not $tables) }}
{{ include "agentsec.toml.key" $k }} = {{ include "agentsec.toml.value" $v }}
{{- end -}}
{{- end -}}
{{- range $k := keys $map | sortAlpha -}}
{{- $v := index $map $k -}}
{{- $kind := kindOf $v -}}
{{- $p := include "agentsec.toml.key" $k -}}
{{- if $path -}}{{- $p = printf "%s.%s" $path $p -}}{{- end -}}
{{- if eq $kind "map" }}

[{{ $p }}]
{{- include "agentsec.toml.table" (dict "path" $p "map" $v) -}}
{{- else if and (eq $kind "slice") (gt (len $v) 0) (eq (kindOf (first $v)) "map") -}}
{{- range $item := $v }}

[[{{ $p }}]]
{{- include "agentsec.toml.table" (dict "path" $p "map" $item) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
Whether a migrations Job runs for a service: `migrations.mode: job` on
PostgreSQL (a SQLite file lives in the pod's emptyDir, where only the pod
itself reaches it). On the first install with `migrations.hooks` and
`secrets.generate`, a pre-install hook would start before the generated
Secret exists: that install migrates at start instead.
(dict "root" $ "key" "identity")
*/}}
{{- define "agentsec.migrationsJob" -}}
{{- $m := .root.Values.migrations -}}
{{- if and (eq $m.mode "job") (include "agentsec.databaseSource" .) -}}
{{- if not (and $m.hooks .root.Values.secrets.generate .root.Release.IsInstall) -}}
true
{{- end -}}
{{- end -}}
{{- end -}}

{{/* `database.migrate_on_start` of a service: false when a Job or an init container migrates. */}}
{{- define "agentsec.migrateOnStart" -}}
{{- if or (eq .root.Values.migrations.mode "initContainer") (include "agentsec.migrationsJob" .) -}}
false
{{- else -}}
true
{{- end -}}
{{- end -}}
