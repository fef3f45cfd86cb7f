module github.com/finsvc/finance/services/devkafka

go 1.26.8
