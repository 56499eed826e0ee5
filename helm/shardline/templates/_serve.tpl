{{/*
The spec that is deployed: values.spec, checked for what only the chart needs,
plus the placement resources that tie router replicas to router pods and each
model's replicas to its own worker group, `router.auth.tokens_file` pointing
at the mounted auth Secret when there is one, and the telemetry section with the
`otel.*` values in it. Returned as JSON (templates return text).
*/}}
{{- define "shardline.spec" -}}
{{- $spec := deepCopy .Values.spec -}}
{{- $router := deepCopy (default (dict) $spec.router) -}}
{{- if and (hasKey $router "port") (eq (int $router.port) 0) -}}
{{- fail "spec.router.port is 0; the chart needs a fixed port for the router Service and probes" -}}
{{- end -}}
{{- $routerCustom := deepCopy (default (dict) $router.custom) -}}
{{- $_ := set $routerCustom .Values.router.placementResource 1 -}}
{{- $_ := set $router "custom" $routerCustom -}}
{{- if .Values.auth.existingSecret -}}
{{- $auth := deepCopy (default (dict) $router.auth) -}}
{{- $_ := set $auth "tokens_file" (printf "/etc/shardline/auth/%s" .Values.auth.key) -}}
{{- $_ := set $router "auth" $auth -}}
{{- end -}}
{{- $_ := set $spec "router" $router -}}
{{- $_ := set $spec "telemetry" (include "shardline.telemetry" . | fromJson) -}}
{{- $models := list -}}
{{- range $i, $m := $spec.models -}}
{{- if not (hasPrefix "/" $m.path) -}}
{{- fail (printf "spec.models[%d].path is %q; in the chart model paths must be absolute (inside the image or under modelVolume.mountPath %s)" $i $m.path $.Values.modelVolume.mountPath) -}}
{{- end -}}
{{- $resources := deepCopy (default (dict) $m.resources) -}}
{{- $custom := deepCopy (default (dict) $resources.custom) -}}
{{- $_ := set $custom (include "shardline.modelResource" $m.name) 1 -}}
{{- $_ := set $resources "custom" $custom -}}
{{- $models = append $models (merge (dict "resources" $resources) $m) -}}
{{- end -}}
{{- $_ := set $spec "models" $models -}}
{{- toJson $spec -}}
{{- end -}}

{{/* Ray Serve config (ServeDeploySchema): the same one `shardline render serve-config` writes. */}}
{{- define "shardline.serveConfig" -}}
{{- $spec := include "shardline.spec" . | fromJson -}}
{{- $app := dict "name" (default "shardline" $spec.name) "route_prefix" nil "import_path" "shardline.serve.serve_config:app_builder" "args" (dict "spec" $spec) -}}
{{- toYaml (dict "proxy_location" "Disabled" "applications" (list $app)) -}}
{{- end -}}

{{/* Per model: Ray logical CPUs and GPUs one replica needs (replica process + TP x PP workers). */}}
{{- define "shardline.modelShape" -}}
{{- $p := default (dict) .parallelism -}}
{{- $r := default (dict) .resources -}}
{{- $workers := mul (int (default 1 $p.tensor)) (int (default 1 $p.pipeline)) -}}
{{- $cpus := ceil (addf 1 (mulf $workers (default 1 $r.cpu))) | int -}}
{{- $gpus := ceil (mulf $workers (default 0 $r.gpu)) | int -}}
{{- toJson (dict "workers" $workers "cpus" $cpus "gpus" $gpus) -}}
{{- end -}}

{{/*
spec.telemetry as deployed: `otel.endpoint` becomes the OTLP exporter
(`otlp-<otel.protocol>` to that endpoint) and `otel.serviceName` the spans'
service.name; without an endpoint nothing is exported (`off`) unless the spec
chooses an exporter itself. Metrics ports must be fixed: the ServiceMonitor
scrapes them by number.
*/}}
{{- define "shardline.telemetry" -}}
{{- $t := deepCopy (default (dict) .Values.spec.telemetry) -}}
{{- if .Values.otel.endpoint -}}
{{- if or (hasKey $t "exporter") (hasKey $t "otlp_endpoint") -}}
{{- fail "otel.endpoint is set and so is spec.telemetry.exporter/otlp_endpoint: name the collector in one of them" -}}
{{- end -}}
{{- $_ := set $t "exporter" (printf "otlp-%s" .Values.otel.protocol) -}}
{{- $_ := set $t "otlp_endpoint" .Values.otel.endpoint -}}
{{- else if not (hasKey $t "exporter") -}}
{{- $_ := set $t "exporter" "off" -}}
{{- end -}}
{{- if and (hasKey $t "service_name") (ne $t.service_name .Values.otel.serviceName) -}}
{{- fail (printf "spec.telemetry.service_name is %q but otel.serviceName is %q: set one of them" $t.service_name .Values.otel.serviceName) -}}
{{- end -}}
{{- $_ := set $t "service_name" .Values.otel.serviceName -}}
{{- if (ne (toString (dig "metrics" true $t)) "false") -}}
{{- range $key := list "metrics_port" "replica_metrics_port" -}}
{{- if eq (int (dig $key 0 $t)) 0 -}}
{{- fail (printf "spec.telemetry.%s is 0; the chart needs fixed metrics ports for its ServiceMonitor and NetworkPolicy" $key) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toJson $t -}}
{{- end -}}

{{/* Named container ports for Prometheus: Ray's on every pod, plus the router's or a
replica's own endpoint (an engine pod holds one replica: it binds the base port). */}}
{{- define "shardline.metricsPorts" -}}
{{- $t := .spec.telemetry -}}
- {name: ray-metrics, containerPort: {{ .root.Values.metrics.rayPort }}}
{{- if (ne (toString (dig "metrics" true $t)) "false") }}
{{- if eq .role "router" }}
- {name: router-metrics, containerPort: {{ int $t.metrics_port }}}
{{- else if eq .role "engine" }}
- {name: replica-metrics, containerPort: {{ int $t.replica_metrics_port }}}
{{- end }}
{{- end }}
{{- end -}}

{{/* Every Prometheus port the release serves, by container port name (JSON). */}}
{{- define "shardline.scrapedPorts" -}}
{{- $t := (include "shardline.spec" . | fromJson).telemetry -}}
{{- $ports := dict "ray-metrics" (int .Values.metrics.rayPort) -}}
{{- if (ne (toString (dig "metrics" true $t)) "false") -}}
{{- $_ := set $ports "router-metrics" (int $t.metrics_port) -}}
{{- $_ := set $ports "replica-metrics" (int $t.replica_metrics_port) -}}
{{- end -}}
{{- toJson $ports -}}
{{- end -}}
