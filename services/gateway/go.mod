module github.com/finsvc/finance/services/gateway

go 1.26.8
