"""The demo company: `company.create_demo` writes it (members, campaigns, versions and 26
weeks of leads with their history) through the bulk writer; `history` draws each lead's
story, `worktime` places it in business time, `extras` adds the marketer's side and `reads`
holds the queries it needs."""
