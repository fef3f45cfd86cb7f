module github.com/finsvc/finance/services/processor-sim

go 1.26.8
