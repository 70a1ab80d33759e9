module github.com/headwater/headwater-go

go 1.22
