// Package integration holds cocoon's end-to-end tests: real QEMU booting the
// real guest kernel and image, driven through the same packages and binaries
// users run. The tests are behind the "integration" build tag; `make test`
// builds the assets and runs them. They never skip for lack of KVM: without
// it they run under TCG.
package integration
