// Package chart holds sigedge's Helm chart (Chart.yaml, values.yaml, templates/) and its tests, which
// render the chart with Helm, decode every object strictly into its Kubernetes API type, and load
// each rendered configuration with sigedge's own loader. See chart/README.md.
package chart
