package main

// item is one product of the sample catalogue.
type item struct {
	ID         int      `json:"id"`
	SKU        string   `json:"sku"`
	Name       string   `json:"name"`
	Category   string   `json:"category"`
	PriceCents int      `json:"price_cents"`
	Currency   string   `json:"currency"`
	InStock    int      `json:"in_stock"`
	Tags       []string `json:"tags"`
}

// catalogue returns the fixed product list the API serves.
func catalogue() []item {
	return []item{
		{1, "KB-104", "Mechanical keyboard", "peripherals", 8900, "EUR", 42, []string{"usb", "tactile"}},
		{2, "MS-220", "Wireless mouse", "peripherals", 2900, "EUR", 130, []string{"bluetooth"}},
		{3, "MN-27Q", "27\" QHD monitor", "displays", 27900, "EUR", 12, []string{"ips", "144hz"}},
		{4, "MN-24F", "24\" FHD monitor", "displays", 13900, "EUR", 0, []string{"ips"}},
		{5, "HD-BT5", "Noise-cancelling headphones", "audio", 19900, "EUR", 25, []string{"bluetooth", "anc"}},
		{6, "SP-USB", "USB desk speakers", "audio", 4900, "EUR", 61, []string{"usb"}},
		{7, "CB-C2C", "USB-C cable, 2 m", "cables", 1290, "EUR", 480, []string{"usb-c", "100w"}},
		{8, "CB-HD2", "HDMI 2.1 cable, 1.5 m", "cables", 1490, "EUR", 215, []string{"hdmi", "8k"}},
		{9, "DK-TB4", "Thunderbolt 4 dock", "docks", 24900, "EUR", 7, []string{"thunderbolt", "usb-c"}},
		{10, "WC-1080", "1080p webcam", "video", 5900, "EUR", 88, []string{"usb", "autofocus"}},
		{11, "SS-1TB", "1 TB NVMe SSD", "storage", 7900, "EUR", 54, []string{"nvme", "pcie4"}},
		{12, "HD-4TB", "4 TB external drive", "storage", 10900, "EUR", 19, []string{"usb", "backup"}},
		{13, "LP-STD", "Aluminium laptop stand", "accessories", 3900, "EUR", 73, []string{"ergonomic"}},
		{14, "MP-XL", "XL desk mat", "accessories", 1990, "EUR", 160, []string{"cloth"}},
		{15, "UPS-650", "650 VA UPS", "power", 8900, "EUR", 9, []string{"battery"}},
		{16, "PS-6X", "6-way surge protector", "power", 2490, "EUR", 97, []string{"surge"}},
	}
}
