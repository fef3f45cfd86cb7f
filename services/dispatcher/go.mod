module github.com/finsvc/finance/services/dispatcher

go 1.26.8
