module builder.example/services/backend

go 1.19
