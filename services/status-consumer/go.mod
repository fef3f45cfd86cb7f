module github.com/finsvc/finance/services/status-consumer

go 1.26.8
