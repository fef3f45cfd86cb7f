module github.com/finsvc/finance/services/financectl

go 1.26.8
