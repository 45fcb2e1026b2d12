module builder.example/services/frontend

go 1.19
