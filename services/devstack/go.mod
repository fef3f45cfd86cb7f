module github.com/finsvc/finance/services/devstack

go 1.26.8
