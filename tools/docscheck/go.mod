module github.com/finsvc/finance/tools/docscheck

go 1.26.8
