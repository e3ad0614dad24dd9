"""The Admin tab's sections: reports, model performance, users, models, errors."""
