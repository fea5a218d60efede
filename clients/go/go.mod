module sidelog/clients/go

go 1.19
