module github.com/finsvc/finance/services/outbox-relay

go 1.26.8
