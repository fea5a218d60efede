module sidelog/examples/go

go 1.19

require sidelog/clients/go v0.0.0

replace sidelog/clients/go => ../../clients/go
