module github.com/sigedge/sigedge/bench

go 1.26.8

require (
	github.com/sigedge/sigedge v0.0.0
	github.com/statsig-io/go-sdk v1.35.1
	github.com/statsig-io/ip3country-go v0.2.0
)

require (
	github.com/dlclark/regexp2 v1.12.0 // indirect
	github.com/google/uuid v1.6.0 // indirect
	github.com/ua-parser/uap-go v0.0.0-20211112212520-00c877edfe0f // indirect
	gopkg.in/yaml.v2 v2.4.0 // indirect
)

// The benchmarks measure the code in this checkout.
replace github.com/sigedge/sigedge => ../
